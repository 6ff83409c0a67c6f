"""An OpenAI-compatible HTTP server on 127.0.0.1 with fault injection, for tests, benchmarks and offline try-outs.

Not part of the package: nothing in `flexxray_nb` uses it. Run it with `python tests/loopback.py --port 8765`.
"""

# The LLM stages of the toolkit talk to the OpenAI API through the official `openai` client. Mocking the client hides
# what matters (retries, timeouts, `retry-after`, batch files, the shape `parse()` expects), and `openai` 3.x uses
# `httpx2`, which respx cannot intercept anyway. So the tests run the real client against a real HTTP server on
# 127.0.0.1 that answers like OpenAI: same JSON, same headers, same error bodies, same batch life cycle.
#
# The server needs no model. A *responder* reads the prompt (numbered passages `[P3] ...` and a `Question:` line) and
# fills whatever JSON schema it is given, scoring passages by word overlap with the question and quoting them verbatim,
# or, on purpose, paraphrased or invented, so that the toolkit's verbatim checks can be tested. A fault queue makes the
# next request fail in a chosen way. Only the standard library is used.
from __future__ import annotations
import argparse, base64, bisect, hashlib, itertools, json, math, random, re, struct, sys, threading, time, traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# ## Tokens and prompt caching
#
# Usage figures drive the toolkit's cost estimates, so they must be deterministic: one token per four characters is
# close enough to `o200k` on English prose. The prompt is the messages' roles and texts in order, so a change anywhere
# changes the prompt.
CHARS_PER_TOKEN = 4

def count_tokens(text: str) -> int:
    "Approximate tokens in `text`: one per four characters, rounded up."
    return -(-len(text) // CHARS_PER_TOKEN)

def message_text(content) -> str:
    "The text of a message's `content`, a string or a list of parts."
    if isinstance(content, str): return content
    return ''.join(p.get('text', '') for p in content or () if isinstance(p, dict))

def prompt_text(messages: list[dict]) -> str:
    "The prompt as the model reads it: each message's role and text, in order."
    return ''.join(f"<{m.get('role', 'user')}>{message_text(m.get('content'))}\n" for m in messages)

# OpenAI caches prompts automatically from 1,024 tokens: a request whose prompt starts with the same text as an earlier
# one reports the shared part, in steps of 128 tokens, as `usage.prompt_tokens_details.cached_tokens`. That is why the
# toolkit puts instructions and the transcript first and the question last; `PromptCache` lets a test check it.
CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128

def shared_prefix_len(a: str, b: str) -> int:
    "Length of the longest common prefix of `a` and `b` (binary search on slices, fast on long prompts)."
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]: lo = mid
        else: hi = mid - 1
    return lo

class PromptCache:
    "Recent prompts per model, to report `cached_tokens` like OpenAI's automatic prompt caching."
    def __init__(self, size: int = 1024): self.size, self.sorted, self.order = size, [], []
    def lookup(self, model: str, text: str) -> int:
        "Cached tokens for prompt `text`: its longest prefix shared with an earlier prompt, if ≥ 1,024 tokens; remembers `text`."
        i = bisect.bisect_left(self.sorted, (model, text))
        # the longest prefix shared with any prompt is shared with a neighbour in sorted order
        shared = max((shared_prefix_len(p, text) for m, p in self.sorted[max(0, i - 1):i + 1] if m == model), default=0)
        self.sorted.insert(i, (model, text)); self.order.append((model, text))
        if len(self.order) > self.size: del self.sorted[bisect.bisect_left(self.sorted, self.order.pop(0))]
        tokens = shared // CHARS_PER_TOKEN
        return 0 if tokens < CACHE_MIN_TOKENS else CACHE_MIN_TOKENS + (tokens - CACHE_MIN_TOKENS) // CACHE_STEP * CACHE_STEP

# ## Embeddings
#
# The semantic stage needs vectors where related texts are closer than unrelated ones, and the same text always gives the
# same vector. A hashed bag of content words does that without a model: each word adds ±1 to one of 256 buckets (a
# stable hash, not Python's salted `hash`), and the vector is scaled to length 1 as OpenAI's are.
EMBED_DIMS = 256
_STOPWORDS = frozenset('''a an the and or but of to in on at for with by from as is are was were be been being it its this
that these those we you they i he she me my our your their them do does did not no so if then than there here what which
who whom how why when where can could would should will just also about into over up out very'''.split())

def _words(text: str) -> list[str]:
    "Lower-case words of `text` without stop words, a plural `s` dropped."
    return [w[:-1] if len(w) > 3 and w.endswith('s') and not w.endswith('ss') else w
            for w in re.findall(r'[a-z0-9]+', text.lower()) if w not in _STOPWORDS]

def hashed_embedding(text: str, dims: int = EMBED_DIMS) -> list[float]:
    "A unit vector for `text`: its content words hashed into `dims` buckets with a ±1 sign each."
    v = [0.0] * dims
    for w in _words(text) or ['\0' + text]:
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), 'little')
        v[h % dims] += 1.0 if h >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]

def encode_embedding(vec: list[float], encoding_format: str = 'float'):
    "`vec` as the API sends it: a list of floats, or little-endian float32 bytes in base64 (the client's default)."
    return base64.b64encode(struct.pack(f'<{len(vec)}f', *vec)).decode() if encoding_format == 'base64' else vec

def cosine(a: list[float], b: list[float]) -> float:
    "Cosine similarity of two unit vectors."
    return sum(x * y for x, y in zip(a, b))

# ## Reading the prompt
#
# The toolkit's prompts list candidate passages one a line as `[P3] passage text` and ask the question on a line
# starting `Question:`. Only user messages are read, so that example passages in a system prompt are not taken for real
# ones. A passage line may open with who is speaking (`[P1] Mark Delgado (asked: "How fast?"): We started within a
# day.`); quotes leave that label out, since it is not part of what was said. A passage's score is the share of the question's content words it contains, on 0–10: crude, but deterministic and
# ordered the way a model would roughly order them.
@dataclass
class PromptPassages:
    "The question, the numbered passages and any listed sub-questions (`- id: question`) of a prompt."
    question: str = ''
    passages: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)

def parse_prompt(messages: list[dict]) -> PromptPassages:
    "The last `Question:` line, the `[P<n>] text` lines and the `- id: question` lines of the user messages."
    user = '\n'.join(message_text(m.get('content')) for m in messages if m.get('role') == 'user')
    questions = re.findall(r'^\s*Question:\s*(.+?)\s*$', user, re.M)
    return PromptPassages(questions[-1] if questions else '', dict(re.findall(r'^\s*\[([A-Z]{1,3}\d+)\]\s*(.+?)\s*$', user, re.M)),
                          dict(re.findall(r'^\s*-\s*([a-z][a-z0-9_]*):\s*(.+?)\s*$', user, re.M)))

def spoken_text(passage: str) -> str:
    "A passage without its leading speaker label, such as `Mark Delgado (asked: \"How fast?\"): `."
    m = re.match(r'[^:\n"]{1,80}?(?: \(asked: ".*?"\))?: (?=\S)', passage)
    return passage[m.end():] if m else passage

def overlap_score(question: str, passage: str) -> float:
    "Share of the question's content words found in the passage, on a 0–10 scale."
    q = set(_words(question))
    return round(10 * len(q & set(_words(passage))) / len(q), 1) if q else 0.0

# ## Quotes: verbatim, paraphrased, invented
#
# The toolkit's promise is that every quote is verbatim. To test the checks that keep that promise, the responder has
# three modes: `ground` copies the passage exactly; `paraphrase` swaps a few words for synonyms and, if that changes too
# little, reorders two words (close to the source, but not it); `fabricate` writes a sentence that is in no transcript.
MODES = ('ground', 'paraphrase', 'fabricate')
SYNONYMS = {'very': 'really', 'really': 'truly', 'big': 'large', 'large': 'big', 'customers': 'clients', 'customer': 'client',
            'clients': 'customers', 'think': 'believe', 'said': 'stated', 'quickly': 'rapidly', 'fast': 'quick',
            'important': 'crucial', 'because': 'since', 'good': 'solid', 'great': 'excellent', 'help': 'assist',
            'helps': 'assists', 'use': 'employ', 'get': 'obtain', 'main': 'primary', 'problem': 'issue', 'issues': 'problems',
            'cheap': 'inexpensive', 'expensive': 'costly', 'usually': 'typically', 'often': 'frequently', 'maybe': 'perhaps',
            'loved': 'adored', 'high': 'steep', 'price': 'cost', 'pricing': 'prices'}
INVENTED = ('Honestly, we tripled our margins the year the Rotterdam plant switched to drone inspections.',
            'Our board signed a ten-year exclusive with them after a single afternoon demo in Reno.',
            'Every one of our four hundred lines runs their scanners around the clock with zero false positives.',
            'They told us the patent portfolio alone was worth more than the whole services business.')

def paraphrase(text: str, n: int = 3) -> str:
    "`text` with up to `n` words replaced by synonyms, and two words swapped if fewer than two were replaced."
    done = 0
    def swap(m):
        nonlocal done
        w = m.group(0); s = SYNONYMS.get(w.lower())
        if s is None or done >= n: return w
        done += 1
        return s.capitalize() if w[0].isupper() else s
    out = re.sub(r'[A-Za-z]+', swap, text)
    if done < 2 and len(ws := out.split(' ')) >= 4:
        i = len(ws) // 2
        ws[i - 1], ws[i] = ws[i], ws[i - 1]
        out = ' '.join(ws)
    return out if out != text else text.rstrip('.') + ', more or less.'

def fabricate(seed: str) -> str:
    "An invented sentence, chosen by `seed`, that appears in no transcript."
    return INVENTED[int(hashlib.sha1(seed.encode()).hexdigest(), 16) % len(INVENTED)]

# ## Filling a JSON schema
#
# With `response_format` a `json_schema`, the answer must be valid for that schema whatever the toolkit asks for, so the
# responder walks the schema rather than knowing it: `$ref`s into `$defs` and `anyOf` (as pydantic emits them) are
# resolved, objects get every property, numbers honour `minimum`/`maximum`, strings `maxLength`. Field names choose the
# content, as a model reads them:
#
# - an array of objects with a passage-id field describes passages: one item per passage when the item has a score
#   (`score`, `relevance`, ...), else the three most relevant, in prompt order;
# - an array of strings named like ids (`ranking`, `citations`, `passage_ids`, or described as ids) lists the relevant
#   passage ids, best first;
# - `passage_id`/`id` is the passage's id (its number for an integer field), `score` its overlap score scaled into the
#   bounds, `quote`/`text` the passage in the server's mode, `answer` a sentence citing `[P1]`, `reason` a short
#   justification, `stance` "supports".
#
# Clients that cannot use structured outputs put the schema in the prompt instead ("Reply with JSON valid for this JSON
# schema: {...}"); the responder finds it there and answers with JSON for it too.
ID_FIELDS = ('passage_id', 'id', 'pid', 'passage', 'source_id', 'quote_id', 'citation')
ID_LISTS = ('ranking', 'ranked', 'order', 'citations', 'cites', 'sources', 'passages', 'ids', 'evidence')
SCORE_FIELDS = ('score', 'relevance', 'relevance_score', 'rating', 'confidence')
QUOTE_FIELDS = ('quote', 'text', 'verbatim', 'excerpt')
ANSWER_FIELDS = ('answer', 'summary')
REASON_FIELDS = ('reason', 'rationale', 'explanation', 'justification')
NAMED_STRINGS = {'stance': 'supports', 'sentiment': 'positive', 'confidence': 'high'}
KEY_PASSAGES = 3  # items chosen when a schema asks for passages without scoring each

def resolve(schema: dict, root: dict) -> dict:
    "`schema` with `$ref` (into `root`), `anyOf`/`oneOf` (first non-null choice) and `allOf` (first part) resolved."
    while True:
        if '$ref' in schema:
            node = root
            for part in (p for p in schema['$ref'].lstrip('#').split('/') if p): node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != '$ref'}}
        elif 'anyOf' in schema or 'oneOf' in schema:
            opts = schema.get('anyOf') or schema.get('oneOf')
            schema = next((o for o in opts if o.get('type') != 'null'), opts[0])
        elif 'allOf' in schema: schema = schema['allOf'][0]
        else: return schema

def schema_type(schema: dict) -> str:
    "The JSON type a (resolved) schema asks for: the first non-null one."
    t = schema.get('type')
    if isinstance(t, list): t = next((x for x in t if x != 'null'), 'null')
    return t or ('object' if 'properties' in schema else 'array' if 'items' in schema else 'string')

def is_id_field(name: str) -> bool: return name in ID_FIELDS or name.endswith('_id')

def schema_in_prompt(messages: list[dict]) -> dict | None:
    "A JSON schema written into the messages after the word 'schema', as clients without structured outputs send it."
    for m in messages:
        text = message_text(m.get('content'))
        for hit in re.finditer('schema', text, re.I):
            if (start := text.find('{', hit.end())) < 0: break
            try: obj = json.JSONDecoder().raw_decode(text, start)[0]
            except ValueError: continue
            if isinstance(obj, dict) and ('properties' in obj or 'type' in obj): return obj

class Responder:
    "Deterministic answers to a prompt: plain text, a JSON object, or JSON filling any schema, from its passages."
    def __init__(self, messages: list[dict], mode: str = 'ground'):
        self.prompt, self.mode, self.hint = parse_prompt(messages), mode, schema_in_prompt(messages)
        self.scores = {pid: overlap_score(self.prompt.question, t) for pid, t in self.prompt.passages.items()}
        self.ranked = sorted(self.scores, key=lambda pid: -self.scores[pid])
        self.relevant = [pid for pid in self.ranked if self.scores[pid] > 0] or self.ranked[:1]

    def quote(self, pid: str | None) -> str:
        "What the passage's speaker said, in the server's mode: verbatim, paraphrased or invented."
        text = spoken_text(self.prompt.passages.get(pid, ''))
        return {'ground': text, 'paraphrase': paraphrase(text), 'fabricate': fabricate(pid or '')}[self.mode] if pid else ''

    def reason(self, pid: str | None) -> str:
        "Why the passage scored as it did."
        shared = sorted(set(_words(self.prompt.question)) & set(_words(self.prompt.passages.get(pid, ''))))
        return f"Mentions {', '.join(shared[:4])}." if shared else 'Does not address the question.'

    def answer(self) -> str:
        "A short sentence citing the most relevant passages."
        if not self.ranked: return 'No passages were provided.'
        cites = ' '.join(f'[{pid}]' for pid in self.relevant[:2])
        words = self.quote(self.relevant[0]).split()
        return f"The experts say: {' '.join(words[:12])}{'…' if len(words) > 12 else ''} {cites}"

    def fill(self, schema: dict, name: str = '', pid: str | None = None, root: dict | None = None, depth: int = 0):
        "A value valid for `schema`; `name` is the field's name and `pid` the passage being described, if any."
        root = schema if root is None else root
        s = resolve(schema, root)
        if 'const' in s: return s['const']
        if 'enum' in s: return pid if pid in s['enum'] else s['enum'][0]
        t = schema_type(s)
        if t == 'object': return {k: self.fill(v, k, pid, root, depth + 1) for k, v in s.get('properties', {}).items()}
        if t == 'array': return self.fill_array(s, name, pid, root, depth)
        if t in ('number', 'integer'): return self.fill_number(s, name, pid, t)
        if t == 'boolean': return self.scores.get(pid, 0) > 0 if pid else True
        if t == 'null': return None
        return self.fill_string(s, name, pid)

    def fill_array(self, s: dict, name: str, pid, root: dict, depth: int) -> list:
        "Items for an array: passages or their ids when that is what it holds, else as few as `minItems` allows."
        items = resolve(s.get('items', {}), root)
        lo, hi, singular = s.get('minItems', 0), s.get('maxItems'), name.removesuffix('s')
        props = items.get('properties', {}) if schema_type(items) == 'object' else {}
        described = f"{s.get('description', '')} {items.get('description', '')}"
        item = lambda field, p: self.fill(items, field, p, root, depth + 1)
        if depth >= 8: out = []  # a recursive schema: stop here
        elif 'question_id' in props and self.prompt.topics:  # one item per listed sub-question, answered on its own
            out = [self.topic_item(items, qid, q, root, depth) for qid, q in self.prompt.topics.items()]
        elif any(map(is_id_field, props)):
            scored = any(k in SCORE_FIELDS or k.endswith('score') for k in props)
            ids = (self.ranked if scored else self.relevant[:KEY_PASSAGES])[:hi]
            out = [item(singular, p) for p in self.prompt.passages if p in ids]
        elif singular in QUOTE_FIELDS: out = [item(singular, p) for p in self.relevant[:KEY_PASSAGES]]
        elif props == {} and (is_id_field(singular) or name in ID_LISTS or re.search(r'\bids?\b', described, re.I)):
            out = [item('passage_id', p) for p in self.relevant]
        else: out = [item(singular, pid) for _ in range(max(lo, 1))]
        out = out[:hi] if hi is not None else out
        return out + out[-1:] * (lo - len(out)) if out else out

    def topic_item(self, items: dict, qid: str, question: str, root: dict, depth: int) -> dict:
        "An answer to one listed sub-question from its best passage (or 'not discussed' when none shares a word)."
        scores = {p: overlap_score(question, t) for p, t in self.prompt.passages.items()}
        best = max(scores, key=scores.get) if scores else None
        found = bool(best and scores[best] > 0)
        obj = {}
        for k, v in items.get('properties', {}).items():
            t = schema_type(resolve(v, root))
            if k == 'question_id': obj[k] = qid
            elif t == 'boolean': obj[k] = found
            elif t == 'array': obj[k] = [best] if found else []
            elif k in ANSWER_FIELDS: obj[k] = ' '.join(self.quote(best).split()[:20]) if found else ''
            else: obj[k] = self.fill(v, k, best, root, depth + 1)
        return obj

    def fill_number(self, s: dict, name: str, pid, t: str):
        "A number within the schema's bounds: the passage's number for ids, its score for scores, else the lower bound."
        if is_id_field(name) and pid: return int(re.sub(r'\D', '', pid) or 0)
        lo, hi = s.get('minimum', s.get('exclusiveMinimum')), s.get('maximum', s.get('exclusiveMaximum'))
        if name in SCORE_FIELDS or name.endswith('score'):
            lo_, hi_ = (0 if lo is None else lo), (10 if hi is None else hi)
            v = lo_ + (hi_ - lo_) * self.scores.get(pid or (self.ranked or [None])[0], 0.0) / 10
        else: v = lo if lo is not None else min(0, hi) if hi is not None else 0
        step = 1 if t == 'integer' else 0.01
        if 'exclusiveMinimum' in s and v <= s['exclusiveMinimum']: v = s['exclusiveMinimum'] + step
        if 'exclusiveMaximum' in s and v >= s['exclusiveMaximum']: v = s['exclusiveMaximum'] - step
        return int(round(v)) if t == 'integer' else round(v, 2)

    def fill_string(self, s: dict, name: str, pid) -> str:
        "A string chosen by the field's name, within `minLength`/`maxLength`."
        pid = pid or (self.relevant or [None])[0]
        if is_id_field(name) or name == 'source': out = pid or ''
        elif name in QUOTE_FIELDS: out = self.quote(pid)
        elif name in ANSWER_FIELDS: out = self.answer()
        elif name in REASON_FIELDS: out = self.reason(pid)
        else: out = NAMED_STRINGS.get(name, f"loopback {name or 'text'}")
        out = out[:s['maxLength']] if 'maxLength' in s else out
        return out.ljust(s.get('minLength', 0), '.')

    def default_object(self) -> dict:
        "The JSON object answered to `json_object` requests without a schema: an answer and every passage scored."
        return {'answer': self.answer(), 'passages': [{'passage_id': p, 'score': self.scores[p], 'reason': self.reason(p),
                                                      'quote': self.quote(p)} for p in self.prompt.passages]}

    def reply(self, response_format: dict | None) -> str:
        "The message content: JSON for the requested (or prompted) schema, a JSON object, or a sentence."
        kind = (response_format or {}).get('type', 'text')
        schema = response_format['json_schema']['schema'] if kind == 'json_schema' else self.hint
        if schema is not None: return json.dumps(self.fill(schema), ensure_ascii=False)
        if kind == 'json_object': return json.dumps(self.default_object(), ensure_ascii=False)
        return self.answer()

# A ranking schema as pydantic writes it (with `$defs` and `$ref`), filled from the example prompt above; then the
# shape of the toolkit's refine step, with speaker labels in the passages, an id ranking and key quotes:

# ## Rate limits
#
# OpenAI meters requests and tokens per minute with buckets that refill continuously, and says where a client stands in
# `x-ratelimit-*` headers on every response (resets written like `6m0s`, `1s`, `120ms`). A request the bucket cannot
# cover gets a 429 with `retry-after`. Limits are enforced only when `rpm`/`tpm` are set; otherwise the headers show
# generous defaults. Token requests count the prompt plus `max_completion_tokens`, as OpenAI does.
DEFAULT_RPM, DEFAULT_TPM = 10_000, 10_000_000

def fmt_duration(seconds: float) -> str:
    "A duration as OpenAI's reset headers write it: `120ms`, `1s`, `8.64s`, `6m0s`, `1h2m3s`."
    seconds = round(max(0.0, seconds), 3)
    if seconds < 1: return f'{round(seconds * 1000)}ms'
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    s = f'{s:.3f}'.rstrip('0').rstrip('.') + 's'
    return f'{int(h)}h{int(m)}m{s}' if h else f'{int(m)}m{s}' if m else s

class RateBucket:
    "A token bucket holding `per_minute` units and refilled continuously over a minute of `clock` time."
    def __init__(self, per_minute: int, clock=time.time):
        self.capacity, self.clock, self.level, self.t = per_minute, clock, float(per_minute), clock()
    def refill(self):
        now = self.clock()
        self.level, self.t = min(self.capacity, self.level + (now - self.t) * self.capacity / 60), now
        return self
    def wait(self, n: float) -> float:
        "Seconds until `n` units are available (0 if they are now)."
        return max(0.0, (n - self.refill().level) * 60 / self.capacity)
    def reset(self) -> float:
        "Seconds until the bucket is full again."
        return (self.capacity - self.refill().level) * 60 / self.capacity

class RateLimits:
    "Request and token buckets; they refuse only when `rpm`/`tpm` are set."
    def __init__(self, rpm: int | None = None, tpm: int | None = None, clock=time.time):
        self.rpm, self.tpm = rpm, tpm
        self.requests, self.tokens = RateBucket(rpm or DEFAULT_RPM, clock), RateBucket(tpm or DEFAULT_TPM, clock)
    def admit(self, tokens: int) -> tuple[str, float] | None:
        "Take one request and `tokens`; or the limit that refuses (`'requests'`/`'tokens'`) and the seconds to wait."
        for kind, limit, bucket, n in (('requests', self.rpm, self.requests, 1), ('tokens', self.tpm, self.tokens, tokens)):
            if limit and (wait := bucket.wait(n)) > 0: return kind, wait
        for bucket, n in ((self.requests, 1), (self.tokens, tokens)): bucket.level -= n
        return None
    def headers(self) -> dict:
        "The `x-ratelimit-*` headers as they stand."
        return {f'x-ratelimit-{k}-{kind}': v for kind, b in (('requests', self.requests), ('tokens', self.tokens))
                for k, v in (('limit', str(b.capacity)), ('remaining', str(max(0, int(b.refill().level)))),
                             ('reset', fmt_duration(b.reset())))}

# A manual clock makes the limits, and the batches below, testable without waiting:
class ManualClock:
    "A clock for tests: `clock()` returns the time, `clock.advance(s)` moves it on."
    def __init__(self, start: float = 1_767_225_600.0): self.t = start  # 2026-01-01 UTC
    def __call__(self) -> float: return self.t
    def advance(self, seconds: float): self.t += seconds; return self

# ## Faults
#
# Every failure the toolkit must survive can be queued: `srv.faults.append(kind, **opts)` (or `srv.inject`) and the
# next request that matches consumes it. By default request faults match chat completions, batch faults match
# `POST /batches`; `path=` (a path suffix, `''` for any), `method=` and `times=` change that, and `custom_id=` aims a
# fault at the batch line with that id instead (`429`, `500`, `503` make it an error line; `length`, `refusal`,
# `invalid_json_content` spoil its completion).
#
# | kind | what the client sees | options |
# |---|---|---|
# | `429` | `RateLimitError`, `retry-after` (over 120 s: the SDK will not retry) | `retry_after=1`, `retry_after_ms`, `code` (`insufficient_quota`), `echo_key` |
# | `500`, `503` | `InternalServerError` | `retry_after`, `echo_key` (the message ends with the key sent, whole) |
# | `401`, `403` | `AuthenticationError`, `PermissionDeniedError`; the message echoes the key sent, masked as OpenAI does or whole as some gateways do | `echo='masked'` or `'whole'` |
# | `slow` | no answer before its timeout: `APITimeoutError` | `delay=2.0` |
# | `drop` | connection closed, no response: `APIConnectionError` | |
# | `malformed` | 200 whose body is not JSON: `json.JSONDecodeError` (as `text/html`, the client returns the text) | `body`, `content_type='application/json'` |
# | `truncated` | 200 whose JSON is cut off: `json.JSONDecodeError` | `at=0.5` (share kept) |
# | `length` | `finish_reason='length'`, content cut mid-JSON; `parse()` raises `LengthFinishReasonError` | |
# | `refusal` | `message.refusal` set, `content` null, `parsed` None | `message` |
# | `invalid_json_content` | content that is JSON but not for the schema; `parse()` raises pydantic's `ValidationError` | `content` |
# | `token_limit_exceeded` | the batch is created, then `failed` with code `token_limit_exceeded` | `limit` |
# | `expired_partial` | the batch `expired` with part of its lines done, the rest in the error file | `done=0.5` |
ERROR_FAULTS = ('401', '403', '429', '500', '503')  # answered with an error body instead of the endpoint's reply
FAULTS = {**{k: (None, '/chat/completions') for k in (*ERROR_FAULTS, 'slow', 'drop', 'malformed', 'truncated',
                                                      'length', 'refusal', 'invalid_json_content')},
          'token_limit_exceeded': ('POST', '/batches'), 'expired_partial': ('POST', '/batches')}

@dataclass
class Fault:
    "A queued fault: its kind, which requests it matches, and its options."
    kind: str
    path: str = '/chat/completions'
    method: str | None = None
    custom_id: str | None = None
    opts: dict = field(default_factory=dict)
    def matches(self, method: str, path: str, custom_id: str | None = None) -> bool:
        return self.custom_id == custom_id and path.endswith(self.path) and self.method in (None, method)

class FaultQueue:
    "Faults waiting for requests; each is consumed by the first request it matches."
    def __init__(self): self.pending, self._lock = [], threading.Lock()
    def append(self, kind, times: int = 1, path: str | None = None, method: str | None = None,
               custom_id: str | None = None, **opts) -> FaultQueue:
        "Queue `times` faults of `kind` (see the table above for kinds and `opts`)."
        kind = str(kind)
        if kind not in FAULTS: raise ValueError(f'unknown fault {kind!r}; one of {", ".join(FAULTS)}')
        m, p = FAULTS[kind]
        with self._lock: self.pending += [Fault(kind, p if path is None else path, method or m, custom_id, opts)
                                          for _ in range(times)]
        return self
    def take(self, method: str, path: str, custom_id: str | None = None) -> Fault | None:
        "Remove and return the first fault matching the request, if any."
        with self._lock:
            for i, f in enumerate(self.pending):
                if f.matches(method, path, custom_id): return self.pending.pop(i)
    def clear(self): self.pending.clear()
    def __len__(self): return len(self.pending)

# ## Requests, replies and errors
#
# Errors look like OpenAI's (`{"error": {"message", "type", "param", "code"}}`) because the client turns that body into
# the exception's message. The checks on `response_format` are the ones OpenAI makes: `json_object` needs the word
# "json" in the messages, and a strict `json_schema` must list every property as required and forbid others in every
# object, which is the mistake that otherwise only shows up against the real API.
@dataclass
class ApiReply:
    "An HTTP answer: status, body (JSON-able, or bytes/str sent as they are), extra headers."
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)
    content_type: str = 'application/json'
    def payload(self) -> bytes:
        if isinstance(self.body, bytes): return self.body
        return self.body.encode() if isinstance(self.body, str) else json.dumps(self.body, ensure_ascii=False).encode()

class ApiError(Exception):
    "An error to answer as OpenAI does, with a status and an error object."
    def __init__(self, status: int, message: str, type: str = 'invalid_request_error', param=None, code=None, headers=None):
        super().__init__(message)
        self.reply = ApiReply(status, {'error': {'message': message, 'type': type, 'param': param, 'code': code}}, headers or {})

@dataclass
class ApiRequest:
    "A request as the endpoints see it, with the fault it consumed, if any."
    method: str
    path: str
    headers: dict
    raw: bytes = b''
    fault: Fault | None = None
    def json(self) -> dict:
        "The body as a JSON object, or the 400 OpenAI sends for anything else."
        try: body = json.loads(self.raw or b'{}')
        except ValueError: body = None
        if not isinstance(body, dict): raise ApiError(400, 'We could not parse the JSON body of your request.')
        return body

def parse_multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    "The fields of a `multipart/form-data` body: name → (filename or None, bytes)."
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m: raise ApiError(400, 'Expected a multipart/form-data body.')
    fields = {}
    for part in raw.split(b'--' + m.group(1).encode())[1:-1]:
        head, _, data = part.partition(b'\r\n\r\n')
        name, filename = re.search(rb'[; ]name="([^"]*)"', head), re.search(rb'filename="([^"]*)"', head)
        if name: fields[name.group(1).decode()] = (filename and filename.group(1).decode(), data.removesuffix(b'\r\n'))
    return fields

def check_strict(schema: dict, name: str):
    "Raise OpenAI's 400 if an object in a strict schema does not require all its properties and forbid others."
    def walk(s, ctx: tuple):
        if not isinstance(s, dict): return
        def fail(msg): raise ApiError(400, f"Invalid schema for response_format '{name}': In context={ctx}, {msg}",
                                      param='response_format', code='invalid_json_schema')
        if s.get('type') == 'object' or 'properties' in s:
            if s.get('additionalProperties') is not False: fail("'additionalProperties' is required to be supplied and to be false.")
            if missing := [k for k in s.get('properties', {}) if k not in s.get('required', [])]:
                fail(f"'required' is required to be supplied and to be an array including every key in properties. Missing '{missing[0]}'.")
        for k, v in s.get('properties', {}).items(): walk(v, ctx + ('properties', k))
        walk(s.get('items'), ctx + ('items',))
        for key in ('anyOf', 'oneOf', 'allOf'):
            for i, v in enumerate(s.get(key, [])): walk(v, ctx + (key, str(i)))
    walk(schema, ())
    for k, v in schema.get('$defs', {}).items(): walk(v, ('$defs', k))

def check_response_format(fmt: dict, prompt: str):
    "Raise the 400 OpenAI sends for a `response_format` it would refuse."
    kind = fmt.get('type')
    if kind == 'json_object' and 'json' not in prompt.lower():
        raise ApiError(400, "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                       param='messages')
    if kind == 'json_schema':
        js = fmt.get('json_schema') or {}
        for key in ('name', 'schema'):
            if not js.get(key): raise ApiError(400, f"Missing required parameter: 'response_format.json_schema.{key}'.",
                                               param=f'response_format.json_schema.{key}', code='missing_required_parameter')
        if js.get('strict'): check_strict(js['schema'], js['name'])
    elif kind not in ('text', 'json_object'):
        raise ApiError(400, f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'.",
                       param='response_format.type', code='invalid_value')

# ## The server
#
# `LoopbackServer` runs a `ThreadingHTTPServer` on 127.0.0.1 in a background thread; `with LoopbackServer() as srv:`
# gives `srv.base_url` to pass to `openai.OpenAI(base_url=...)`. Every request is journalled (method, path, body,
# headers, status and the fault it consumed), except the value of the `Authorization` header: the journal keeps only
# whether credentials were sent, so a test can plant a key and check that it is stored nowhere. Ids are deterministic
# for a given sequence of requests.
MODELS = ('gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-5-mini', 'gpt-5-nano',
          'text-embedding-3-small', 'text-embedding-3-large')
SECRET_HEADERS = ('authorization', 'api-key', 'x-api-key', 'proxy-authorization', 'cookie')
FILE_PURPOSES = ('assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals')
BATCH_ENDPOINTS = ('/v1/chat/completions', '/v1/embeddings')
INVALID_CONTENT = '{"note": "The passages do not say."}'
API_ROUTES = [(m, re.compile('/v1' + p), name) for m, p, name in (
    ('POST', '/chat/completions', 'chat'), ('POST', '/embeddings', 'embeddings_endpoint'),
    ('GET', '/models', 'list_models'), ('GET', '/models/(?P<id>[^/]+)', 'model'),
    ('POST', '/files', 'upload'), ('GET', '/files', 'list_files'), ('GET', '/files/(?P<id>[^/]+)', 'file'),
    ('GET', '/files/(?P<id>[^/]+)/content', 'file_content'), ('DELETE', '/files/(?P<id>[^/]+)', 'delete_file'),
    ('POST', '/batches', 'create_batch'), ('GET', '/batches', 'list_batches'), ('GET', '/batches/(?P<id>[^/]+)', 'batch'),
    ('POST', '/batches/(?P<id>[^/]+)/cancel', 'cancel_batch'))]

def read_body(h: BaseHTTPRequestHandler) -> bytes:
    "The request body, sent with a `content-length` or chunked."
    if 'chunked' in h.headers.get('transfer-encoding', '').lower():
        chunks = []
        while size := int(h.rfile.readline().split(b';')[0].strip() or b'0', 16):
            chunks.append(h.rfile.read(size)); h.rfile.readline()
        while h.rfile.readline().strip(): pass  # trailers, up to the blank line
        return b''.join(chunks)
    return h.rfile.read(int(h.headers.get('content-length') or 0))

def journal_body(req: ApiRequest):
    "A request body for the journal: JSON parsed, a multipart upload summarised."
    ctype = req.headers.get('content-type', '')
    if ctype.startswith('multipart/') and 'boundary=' in ctype:
        return {k: d.decode(errors='replace') if fn is None else {'filename': fn, 'bytes': len(d)}
                for k, (fn, d) in parse_multipart(req.raw, ctype).items()}
    try: return json.loads(req.raw) if req.raw else None
    except ValueError: return req.raw.decode(errors='replace')

class _Handler(BaseHTTPRequestHandler):
    "Hands every request to the `LoopbackServer` (HTTP/1.1, keep-alive like the real API)."
    protocol_version, server_version, sys_version = 'HTTP/1.1', 'loopback', ''
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: 40 ms a request
    def do_GET(self):
        try: self.server.loopback.serve(self)
        except (BrokenPipeError, ConnectionResetError): self.close_connection = True  # the client gave up (timeout)
    do_POST = do_DELETE = do_GET
    def log_message(self, *args): pass  # requests go to the journal, which never holds credentials

# ### Chat completions and embeddings
#
# `complete` is shared by `POST /chat/completions` and batch lines. It checks the request as OpenAI does, charges the
# rate limits, looks the prompt up in the cache, asks the responder, then applies a completion fault: `refusal`,
# `invalid_json_content` or `length` (also what happens naturally when the answer exceeds `max_completion_tokens`).
class ChatAPI:
    "Chat completions, embeddings and models (a part of `LoopbackServer`)."
    def admit(self, tokens: int, model: str) -> ApiReply | None:
        "None if the rate limits admit a request of `tokens`, else the 429 OpenAI sends."
        with self._lock: refused = self.limits.admit(tokens)
        if not refused: return None
        kind, wait = refused
        unit, limit = ('requests per min (RPM)', self.limits.rpm) if kind == 'requests' else ('tokens per min (TPM)', self.limits.tpm)
        msg = (f'Rate limit reached for {model} in organization org-loopback on {unit}: Limit {limit}, '
               f'Requested {1 if kind == "requests" else tokens}. Please try again in {fmt_duration(wait)}.')
        return ApiError(429, msg, kind, code='rate_limit_exceeded',
                        headers={'retry-after': str(math.ceil(wait)), 'retry-after-ms': str(math.ceil(wait * 1000))}).reply

    def complete(self, body: dict, fault: Fault | None = None, limited: bool = True) -> ApiReply:
        "A chat completion for a request `body`, as for an HTTP request or a batch line."
        model, messages = body.get('model'), body.get('messages')
        if not model: raise ApiError(400, 'you must provide a model parameter', param='model')
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "Missing required parameter: 'messages'.", param='messages', code='missing_required_parameter')
        if body.get('stream'): raise ApiError(400, 'The loopback server does not stream responses.', param='stream')
        fmt, text = body.get('response_format') or {'type': 'text'}, prompt_text(messages)
        if fmt.get('type') not in ('text',) + getattr(self, 'formats', ('json_schema', 'json_object')):
            raise ApiError(400, f"Invalid parameter: 'response_format' of type '{fmt.get('type')}' is not supported with this model.",
                           param='response_format', code='invalid_value')
        check_response_format(fmt, text)
        prompt_tokens, max_out = count_tokens(text), body.get('max_completion_tokens') or body.get('max_tokens')
        if limited and (refused := self.admit(prompt_tokens + (max_out or 0), model)): return refused
        with self._lock: cached = self.cache.lookup(model, text)
        content, refusal, finish = Responder(messages, self.mode).reply(fmt), None, 'stop'
        kind, opts = (fault.kind, fault.opts) if fault else (None, {})
        if kind == 'refusal': content, refusal = None, opts.get('message', "I'm sorry, but I can't help with that request.")
        elif kind == 'invalid_json_content': content = opts.get('content', INVALID_CONTENT)
        elif kind == 'length' or (max_out and count_tokens(content) > max_out):
            cut = len(content) // 2 if kind == 'length' else len(content)
            content, finish = content[:min(cut, max_out * CHARS_PER_TOKEN) if max_out else cut], 'length'
        out_tokens = count_tokens(content or refusal)
        return ApiReply(200, {
            'id': self.new_id('chatcmpl-', 29), 'object': 'chat.completion', 'created': int(self.clock()), 'model': model,
            'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': content, 'refusal': refusal, 'annotations': []},
                         'logprobs': None, 'finish_reason': finish}],
            'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': out_tokens, 'total_tokens': prompt_tokens + out_tokens,
                      'prompt_tokens_details': {'cached_tokens': cached, 'audio_tokens': 0},
                      'completion_tokens_details': {'reasoning_tokens': 0, 'audio_tokens': 0, 'accepted_prediction_tokens': 0,
                                                    'rejected_prediction_tokens': 0}},
            'service_tier': 'default', 'system_fingerprint': 'fp_loopback'})

    def embeddings(self, body: dict, fault: Fault | None = None, limited: bool = True) -> ApiReply:
        "Embeddings for a request `body`: one hashed bag-of-words unit vector per input."
        inputs, model = body.get('input'), body.get('model')
        if not model: raise ApiError(400, 'you must provide a model parameter', param='model')
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)): inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or any(x in ('', []) for x in inputs):
            raise ApiError(400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                           param='input')
        texts = [x if isinstance(x, str) else ' '.join(f'tok{t}' for t in x) for x in inputs]
        tokens = sum(map(count_tokens, texts))
        if limited and (refused := self.admit(tokens, model)): return refused
        dims, fmt = body.get('dimensions') or EMBED_DIMS, body.get('encoding_format') or 'float'
        return ApiReply(200, {'object': 'list', 'model': model, 'usage': {'prompt_tokens': tokens, 'total_tokens': tokens},
                           'data': [{'object': 'embedding', 'index': i, 'embedding': encode_embedding(hashed_embedding(t, dims), fmt)}
                                    for i, t in enumerate(texts)]})

    def chat(self, req: ApiRequest) -> ApiReply: return self.complete(req.json(), req.fault)
    def embeddings_endpoint(self, req: ApiRequest) -> ApiReply: return self.embeddings(req.json(), req.fault)
    def model(self, req: ApiRequest, id: str) -> ApiReply:
        return ApiReply(200, {'id': id, 'object': 'model', 'created': 1_715_367_049, 'owned_by': 'system'})
    def list_models(self, req: ApiRequest) -> ApiReply:
        return ApiReply(200, {'object': 'list', 'data': [self.model(req, m).body for m in MODELS]})

# ### Files
#
# Uploads are `multipart/form-data` with a `purpose` and a `file`; batch results are stored the same way, with purpose
# `batch_output`, so `files.content(output_file_id)` works unchanged.
class FileAPI:
    "Files: upload, metadata, content, list, delete (a part of `LoopbackServer`)."
    def store_file(self, data: bytes, filename: str, purpose: str) -> dict:
        "Keep `data` as a file; returns its file object."
        f = {'id': self.new_id('file-', 22), 'object': 'file', 'bytes': len(data), 'created_at': int(self.clock()),
             'filename': filename, 'purpose': purpose, 'status': 'processed', 'expires_at': None, 'status_details': None}
        with self._lock: self.files[f['id']], self._data[f['id']] = f, data
        return f

    def file_object(self, id: str) -> dict:
        "The file object for `id`, or OpenAI's 404."
        if id not in self.files: raise ApiError(404, f'No such File object: {id}', param='id')
        return self.files[id]

    def file_bytes(self, id: str) -> bytes:
        "A stored file's content."
        self.file_object(id)
        return self._data[id]

    def upload(self, req: ApiRequest) -> ApiReply:
        form = parse_multipart(req.raw, req.headers.get('content-type', ''))
        purpose = form.get('purpose', (None, b''))[1].decode()
        if 'file' not in form: raise ApiError(400, "Missing required parameter: 'file'.", param='file', code='missing_required_parameter')
        if purpose not in FILE_PURPOSES: raise ApiError(400, f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param='purpose')
        filename, data = form['file']
        return ApiReply(200, self.store_file(data, filename or 'upload', purpose))

    def file(self, req: ApiRequest, id: str) -> ApiReply: return ApiReply(200, self.file_object(id))
    def file_content(self, req: ApiRequest, id: str) -> ApiReply: return ApiReply(200, self.file_bytes(id), content_type='application/octet-stream')
    def delete_file(self, req: ApiRequest, id: str) -> ApiReply:
        self.file_object(id)
        with self._lock: del self.files[id], self._data[id]
        return ApiReply(200, {'id': id, 'object': 'file', 'deleted': True})
    def list_files(self, req: ApiRequest) -> ApiReply:
        with self._lock: data = sorted(self.files.values(), key=lambda f: f['created_at'], reverse=True)
        return ApiReply(200, {'object': 'list', 'data': data, 'has_more': False})

# ### Batches
#
# A batch is answered when it is created (each line through `complete`, so the responder, the cache and line faults
# apply), then *revealed* by the clock: `validating` for `batch_timing[0]` seconds, `in_progress` for `batch_timing[1]`
# (with `request_counts` growing), `finalizing` for `batch_timing[2]`, then `completed` with an output file whose lines
# come in a shuffled (deterministic) order, as OpenAI's do, and an error file for failed lines. Invalid input lines fail
# the batch at validation with the line numbers in `errors`. The two batch faults reproduce OpenAI's awkward cases:
# `token_limit_exceeded` fails a batch that `batches.create` accepted, and `expired_partial` ends it `expired` at the
# time it would have completed, with the first `done` share of the lines in the output file and the rest in the error
# file.
def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    "An entry of a batch's `errors.data`."
    return {'code': code, 'message': message, 'param': param, 'line': line}

def request_counts(lines: list[dict], total: int) -> dict:
    "A batch's `request_counts` when `lines` are done."
    ok = sum((l['response'] or {}).get('status_code') == 200 for l in lines)
    return {'total': total, 'completed': ok, 'failed': len(lines) - ok}

def jsonl_bytes(rows: list[dict]) -> bytes: return ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows).encode()

@dataclass
class BatchJob:
    "A batch's public record, its answered lines in input order, and what decides its fate."
    record: dict
    t0: float
    lines: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    fault: Fault | None = None
    cancel_t: float | None = None
    done_at_cancel: int = 0

class BatchAPI:
    "Batches: create, retrieve, list, cancel, moved along by the server's clock (a part of `LoopbackServer`)."
    def create_batch(self, req: ApiRequest) -> ApiReply:
        body = req.json()
        for key in ('input_file_id', 'endpoint', 'completion_window'):
            if not body.get(key): raise ApiError(400, f"Missing required parameter: '{key}'.", param=key, code='missing_required_parameter')
        if body['endpoint'] not in BATCH_ENDPOINTS:
            raise ApiError(400, f"Invalid value: '{body['endpoint']}'. Supported values are: {', '.join(BATCH_ENDPOINTS)}.",
                           param='endpoint', code='invalid_value')
        if body['completion_window'] != '24h':
            raise ApiError(400, f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                           param='completion_window', code='invalid_value')
        data, now = self.file_bytes(body['input_file_id']), self.clock()
        record = {'id': self.new_id('batch_', 32), 'object': 'batch', 'endpoint': body['endpoint'], 'errors': None,
                  'input_file_id': body['input_file_id'], 'completion_window': '24h', 'status': 'validating',
                  'output_file_id': None, 'error_file_id': None, 'created_at': int(now), 'in_progress_at': None,
                  'expires_at': int(now) + 86_400, 'finalizing_at': None, 'completed_at': None, 'failed_at': None,
                  'expired_at': None, 'cancelling_at': None, 'cancelled_at': None,
                  'request_counts': {'total': 0, 'completed': 0, 'failed': 0}, 'metadata': body.get('metadata'),
                  'model': None, 'usage': None}
        job = BatchJob(record, now, fault=req.fault)
        self.run_batch(job, data)
        with self._lock: self.batches[record['id']] = job
        return ApiReply(200, dict(record))

    def run_batch(self, job: BatchJob, data: bytes):
        "Validate the input lines, then answer each (a line's faults are those queued with its `custom_id`)."
        endpoint, rows, seen = job.record['endpoint'], [], set()
        for n, line in enumerate(data.decode(errors='replace').splitlines(), 1):
            if not line.strip(): continue
            try: row = json.loads(line)
            except ValueError: row = None
            cid = row.get('custom_id') if isinstance(row, dict) else None
            if not isinstance(row, dict): job.errors.append(batch_error('invalid_json_line', 'This line is not parseable as valid JSON.', n))
            elif not cid or row.get('method') != 'POST' or not isinstance(row.get('body'), dict):
                job.errors.append(batch_error('invalid_request', 'Each line needs a custom_id, method "POST", a url and a body.', n))
            elif row.get('url') != endpoint:
                job.errors.append(batch_error('invalid_url', f"The url '{row.get('url')}' does not match the batch endpoint '{endpoint}'.", n, 'url'))
            elif cid in seen: job.errors.append(batch_error('duplicate_custom_id', f"The custom_id '{cid}' is used more than once.", n, 'custom_id'))
            else: seen.add(cid); rows.append(row)
        if not rows and not job.errors: job.errors.append(batch_error('empty_file', 'The input file has no requests.'))
        if job.errors: return
        job.record['model'] = rows[0]['body'].get('model')
        answer = self.complete if endpoint == '/v1/chat/completions' else self.embeddings
        for row in rows:
            fault = self.faults.take('POST', endpoint, custom_id=row['custom_id'])
            try: reply = self.fault_reply(fault) if fault and fault.kind in ERROR_FAULTS else answer(row['body'], fault, limited=False)
            except ApiError as e: reply = e.reply
            job.lines.append({'id': self.new_id('batch_req_', 32), 'custom_id': row['custom_id'], 'error': None,
                              'response': {'status_code': reply.status, 'request_id': self.new_id('req_', 32), 'body': reply.body}})

    def advance(self, job: BatchJob) -> dict:
        "Move a batch along its timeline to the clock's time; returns its record."
        b, t, (v, p, f) = job.record, self.clock() - job.t0, self.batch_timing
        at, n, kind = (lambda s: int(job.t0 + s)), len(job.lines), job.fault and job.fault.kind
        if b['status'] in ('completed', 'failed', 'expired', 'cancelled'): return b
        if b['status'] == 'cancelling':
            if t >= job.cancel_t + f: self.finish(job, 'cancelled', at(job.cancel_t + f), job.lines[:job.done_at_cancel])
            return b
        if t < v: return b
        if job.errors or kind == 'token_limit_exceeded':
            errors = job.errors or [batch_error('token_limit_exceeded', f"Enqueued token limit reached for {b['model']} in organization "
                                                f"org-loopback. Limit: {job.fault.opts.get('limit', 2_000_000):,} enqueued tokens. "
                                                'Please try again once some in_progress batches have been completed.')]
            b.update(status='failed', failed_at=at(v), errors={'object': 'list', 'data': errors})
            return b
        b.update(status='in_progress', in_progress_at=at(v), request_counts=request_counts(job.lines[:int(n * min(1, (t - v) / p))], n))
        if t < v + p: return b
        if kind == 'expired_partial':
            k = int(n * job.fault.opts.get('done', 0.5))
            self.finish(job, 'expired', at(v + p), job.lines[:k], job.lines[k:])
            return b
        b.update(status='finalizing', finalizing_at=at(v + p))
        if t >= v + p + f: self.finish(job, 'completed', at(v + p + f), job.lines)
        return b

    def finish(self, job: BatchJob, status: str, when: int, done: list, expired: tuple = ()):
        "End a batch: output file of successful lines, error file of failed and expired ones, each in shuffled order."
        b, rng = job.record, random.Random(job.record['id'])
        ok = [l for l in done if l['response']['status_code'] == 200]
        failed = [l for l in done if l['response']['status_code'] != 200] + [
            {'id': l['id'], 'custom_id': l['custom_id'], 'response': None,
             'error': {'code': 'batch_expired', 'message': 'This request could not be executed before the completion window expired.'}}
            for l in expired]
        for name, lines in (('output', ok), ('error', failed)):
            if lines: b[f'{name}_file_id'] = self.store_file(jsonl_bytes(rng.sample(lines, len(lines))), f"{b['id']}_{name}.jsonl", 'batch_output')['id']
        usage = [l['response']['body'].get('usage') or {} for l in ok]
        tokens_in, tokens_out = sum(u.get('prompt_tokens', 0) for u in usage), sum(u.get('completion_tokens', 0) for u in usage)
        b.update({'status': status, f'{status}_at': when, 'request_counts': request_counts(ok + failed, len(job.lines)),
                  'usage': {'input_tokens': tokens_in, 'output_tokens': tokens_out, 'total_tokens': tokens_in + tokens_out,
                            'input_tokens_details': {'cached_tokens': sum((u.get('prompt_tokens_details') or {}).get('cached_tokens', 0) for u in usage)},
                            'output_tokens_details': {'reasoning_tokens': 0}}})

    def job(self, id: str) -> BatchJob:
        if id not in self.batches: raise ApiError(404, f'No batch found with id {id!r}.', param='batch_id')
        return self.batches[id]

    def batch(self, req: ApiRequest, id: str) -> ApiReply:
        with self._lock: return ApiReply(200, dict(self.advance(self.job(id))))

    def list_batches(self, req: ApiRequest) -> ApiReply:
        with self._lock: data = [dict(self.advance(j)) for j in reversed(self.batches.values())]
        return ApiReply(200, {'object': 'list', 'data': data, 'has_more': False,
                           'first_id': data[0]['id'] if data else None, 'last_id': data[-1]['id'] if data else None})

    def cancel_batch(self, req: ApiRequest, id: str) -> ApiReply:
        with self._lock:
            job = self.job(id)
            b = self.advance(job)
            if b['status'] not in ('validating', 'in_progress', 'finalizing'):
                raise ApiError(400, f"Cannot cancel a batch with status '{b['status']}'.")
            job.cancel_t, job.done_at_cancel = self.clock() - job.t0, b['request_counts']['completed'] + b['request_counts']['failed']
            b.update(status='cancelling', cancelling_at=int(self.clock()))
            return ApiReply(200, dict(b))

# ### Serving
#
# `serve` answers one HTTP request: it journals it, waits `latency`, takes the first matching fault, routes the request
# and sends the reply with OpenAI's headers (`x-request-id`, `openai-processing-ms`, `x-ratelimit-*`). Transport faults
# happen here: `drop` closes the connection unanswered, `slow` sleeps before answering, `malformed` and `truncated`
# spoil the body of an otherwise normal answer.
def presented_key(headers: dict) -> str:
    "The credential a request presented: its bearer token, or what its `Authorization` header holds."
    auth = headers.get('authorization') or headers.get('api-key') or ''
    return auth.split(' ', 1)[1] if ' ' in auth else auth

def mask_key(key: str) -> str:
    "A key as OpenAI's error messages show it: the first eight and last four characters, stars between."
    return key[:8] + '*' * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else '*' * len(key)

class LoopbackServer(ChatAPI, FileAPI, BatchAPI):
    "An OpenAI-compatible API on 127.0.0.1 answering from the prompt, with rate limits, prompt caching and faults."
    def __init__(self, latency: float = 0.0, rpm: int | None = None, tpm: int | None = None, clock=None,
                 mode: str = 'ground', port: int = 0, batch_timing=(1.0, 2.0, 1.0), verbose: bool = False,
                 formats=('json_schema', 'json_object'), batches: bool = True):
        if mode not in MODES: raise ValueError(f'mode must be one of {MODES}, not {mode!r}')
        self.latency, self.mode, self.port, self.batch_timing, self.verbose = latency, mode, port, batch_timing, verbose
        self.formats, self.serves_batches = tuple(formats), batches  # to play Ollama/vLLM: fewer formats, no batches
        self.clock = clock or time.time
        self.limits, self.cache, self.faults = RateLimits(rpm, tpm, self.clock), PromptCache(), FaultQueue()
        self.journal, self.files, self.batches = [], {}, {}
        self._data, self._lock, self._count = {}, threading.RLock(), itertools.count(1)
        self._stopping, self._httpd, self._thread = threading.Event(), None, None

    def start(self) -> LoopbackServer:
        "Serve in a background thread (port 0 picks a free port)."
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(('127.0.0.1', self.port), _Handler)
        self._httpd.daemon_threads, self._httpd.loopback = True, self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True,
                                        name=f'loopback-{self.port}')
        self._thread.start()
        return self

    def stop(self):
        "Stop serving; requests sleeping in `latency` or a `slow` fault wake up."
        if self._httpd is None: return
        self._stopping.set()
        self._httpd.shutdown(); self._httpd.server_close(); self._thread.join()
        self._httpd = None

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()
    def __repr__(self): return f'LoopbackServer({self.base_url}, mode={self.mode!r})'

    @property
    def base_url(self) -> str: return f'http://127.0.0.1:{self.port}/v1'

    def inject(self, kind, **opts) -> FaultQueue:
        "Queue a fault: the same as `self.faults.append(kind, **opts)`."
        return self.faults.append(kind, **opts)

    def requests(self, path_suffix: str = '', method: str | None = None) -> list[dict]:
        "Journal entries whose path ends with `path_suffix` (and with `method`, if given)."
        with self._lock: return [e for e in self.journal if e['path'].endswith(path_suffix) and method in (None, e['method'])]

    def new_id(self, prefix: str, n: int = 24) -> str:
        "A fresh id in OpenAI's style (`chatcmpl-…`, `file-…`, `batch_…`), the same for the same sequence of requests."
        return prefix + hashlib.sha1(f'{prefix}{next(self._count)}'.encode()).hexdigest()[:n]

    def route(self, req: ApiRequest) -> ApiReply:
        "The endpoint's reply for a request, or OpenAI's 404 for an unknown URL."
        if not self.serves_batches and re.match(r'/v1/(files|batches)', req.path): raise ApiError(404, f'Invalid URL ({req.method} {req.path})')
        for method, pattern, name in API_ROUTES:
            if method == req.method and (m := pattern.fullmatch(req.path.rstrip('/'))): return getattr(self, name)(req, **m.groupdict())
        raise ApiError(404, f'Invalid URL ({req.method} {req.path})')

    def fault_reply(self, fault: Fault, req: ApiRequest | None = None) -> ApiReply:
        "The error reply for a `401`, `403`, `429`, `500` or `503` fault; `req` gives the key it may echo."
        o, quota = fault.opts, fault.opts.get('code') == 'insufficient_quota'
        key = presented_key(req.headers) if req else ''
        if fault.kind in ('401', '403'):
            shown = key if o.get('echo') == 'whole' else mask_key(key)
            msg = (f'Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys.'
                   if fault.kind == '401' else f'The API key {shown} is not allowed to use this model.')
            return ApiError(int(fault.kind), msg, 'invalid_request_error', code='invalid_api_key').reply
        if fault.kind == '429':
            retry_after = o.get('retry_after', None if quota else 1)
            msg = ('You exceeded your current quota, please check your plan and billing details.' if quota
                   else f'Rate limit reached for requests. Please try again in {retry_after}s.')
            reply = ApiError(429, msg, 'insufficient_quota' if quota else 'requests', code=o.get('code', 'rate_limit_exceeded')).reply
        else:
            retry_after = o.get('retry_after')
            reply = ApiError(int(fault.kind), 'The server had an error while processing your request. Sorry about that!'
                             if fault.kind == '500' else 'The engine is currently overloaded, please try again later.', 'server_error').reply
        if o.get('echo_key'): reply.body['error']['message'] += f' (request made with the key {key})'
        if retry_after is not None: reply.headers['retry-after'] = str(retry_after)
        if 'retry_after_ms' in o: reply.headers['retry-after-ms'] = str(o['retry_after_ms'])
        return reply

    def record(self, req: ApiRequest, query: str) -> dict:
        "Journal a request, keeping only whether it carried credentials, never their value."
        h = req.headers
        retries = h.get('x-stainless-retry-count', '')
        entry = {'time': self.clock(), 'method': req.method, 'path': req.path, 'query': query,
                 'headers': {k: v for k, v in h.items() if k not in SECRET_HEADERS}, 'auth': any(k in h for k in SECRET_HEADERS),
                 'retry_count': int(retries) if retries.isdigit() else None, 'body': journal_body(req), 'status': None,
                 'fault': None, 'request_id': self.new_id('req_', 32)}
        with self._lock: self.journal.append(entry)
        return entry

    def serve(self, h: BaseHTTPRequestHandler):
        "Answer one HTTP request."
        url = urlsplit(h.path)
        req = ApiRequest(h.command, url.path, {k.lower(): v for k, v in h.headers.items()}, read_body(h))
        entry, t0 = self.record(req, url.query), time.perf_counter()
        if self.latency: self._stopping.wait(self.latency)
        req.fault = self.faults.take(req.method, req.path)
        kind, opts = (req.fault.kind, req.fault.opts) if req.fault else (None, {})
        entry['fault'] = kind
        if kind == 'drop': h.close_connection = True; return
        if kind == 'slow': self._stopping.wait(opts.get('delay', 2.0))
        try: reply = self.fault_reply(req.fault, req) if kind in ERROR_FAULTS else self.route(req)
        except ApiError as e: reply = e.reply
        except Exception as e:  # a bug here: answer 500 with its description rather than hang the client
            traceback.print_exc()
            reply = ApiError(500, f'loopback server error: {e!r}', 'server_error').reply
        if kind == 'malformed':
            reply = ApiReply(200, opts.get('body', '<html><body><h1>502 Bad Gateway</h1></body></html>'),
                          content_type=opts.get('content_type', 'application/json'))
        if kind == 'truncated': reply = ApiReply(reply.status, (p := reply.payload())[:int(len(p) * opts.get('at', 0.5))], reply.headers)
        entry['status'] = reply.status
        if self.verbose: print(f'{req.method} {req.path} {reply.status}', file=sys.stderr, flush=True)
        payload = reply.payload()
        with self._lock: limits = self.limits.headers()
        h.send_response(reply.status)
        for k, v in {'content-type': reply.content_type, 'content-length': str(len(payload)), 'x-request-id': entry['request_id'],
                     'openai-version': '2020-10-01', 'openai-processing-ms': str(round((time.perf_counter() - t0) * 1000)),
                     **limits, **reply.headers}.items(): h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)

# The real client against it: a structured answer parsed into a pydantic model, with OpenAI's headers and usage.

# A fault as the client meets it, and a batch from upload to results with the clock moved by hand:

# ## From the command line
#
# `python -m flexxray_nb.loopback --port 8765` serves until interrupted, for the offline LLM demo: point the toolkit's
# `base_url` (or `OPENAI_BASE_URL`) at `http://127.0.0.1:8765/v1` with any API key.
def main(argv: list[str] | None = None):
    "Serve the loopback API until interrupted."
    ap = argparse.ArgumentParser(prog='python -m flexxray_nb.loopback', description='An OpenAI-compatible API on 127.0.0.1.')
    ap.add_argument('--port', type=int, default=8765, help='port (0: a free one); default 8765')
    ap.add_argument('--latency', type=float, default=0.0, help='seconds added to every request')
    ap.add_argument('--rpm', type=int, help='requests per minute to enforce')
    ap.add_argument('--tpm', type=int, help='tokens per minute to enforce')
    ap.add_argument('--mode', choices=MODES, default='ground', help='quotes verbatim, paraphrased or invented')
    ap.add_argument('--quiet', action='store_true', help='do not print one line per request')
    a = ap.parse_args(argv)
    srv = LoopbackServer(latency=a.latency, rpm=a.rpm, tpm=a.tpm, mode=a.mode, port=a.port, verbose=not a.quiet).start()
    print(f'loopback OpenAI API at {srv.base_url} (Ctrl-C to stop)', flush=True)
    try:
        while srv._thread.is_alive(): srv._thread.join(0.5)
    except KeyboardInterrupt: pass
    finally: srv.stop()
#| eval: false
if __name__ == '__main__': main()
