"""Baseline rankers the benchmarks compare the toolkit's evidence ranking with (not part of the package).

- `PassageIndex`: plain BM25 (bm25s, k1 1.2, b 0.75) over any texts, with the package's tokens.
- `rank_turns`: BM25 over a transcript's turns and their three-sentence windows, plus a lead-in (a turn borrows the
  decayed score of the turns before it: the question that prompted an answer), a little of the next turn, a boost for
  the speakers the question names, and `spread` (the top turns from different stretches of the conversation).
- `rank_quotes`: the same ideas over quotes: BM25 of the quote plus BM25 of its context question.

`RankWeights` were chosen on QMSum's DEV split as a plateau (a step on any weight moves hit@5 by a few hundredths at
most); `eval_retrieval.py --ablate` switches each signal off. The toolkit itself ranks with `find_evidence`.
"""
from __future__ import annotations
from collections import Counter
from dataclasses import dataclass
import numpy as np
import bm25s
from flexxray_nb.core import Quote, Transcript
from flexxray_nb.quotes import STOPWORDS, sentence_spans
from flexxray_nb.rank import QUESTION_WORDS, diversify, find_speakers, tokenize

def query_tokens(question: str, synonyms=()) -> list[str]:
    "Tokens of a question (question words and boilerplate dropped) and its synonyms."
    return tokenize(' '.join([question, *synonyms]), STOPWORDS | QUESTION_WORDS)

def question_terms(question: str, synonyms=()) -> dict[str, float]:
    "The question's tokens weighted by how often each occurs in the question and its synonyms."
    return dict(Counter(query_tokens(question, synonyms)))

class PassageIndex:
    "A BM25 index over the texts of quotes (or any strings)."
    def __init__(self, texts: list[str]):
        self.tokens = [tokenize(t) for t in texts]
        self.bm25 = bm25s.BM25(k1=1.2, b=0.75)
        if self.tokens: self.bm25.index([t or ['\0'] for t in self.tokens], show_progress=False)  # bm25s refuses none
        self._contexts = None
    def __len__(self): return len(self.tokens)
    def scores(self, terms) -> np.ndarray:
        "BM25 score of every passage for `terms`: a list of query tokens, or a dict of token weights."
        if not terms or not self.tokens: return np.zeros(len(self.tokens))
        if not isinstance(terms, dict): return np.asarray(self.bm25.get_scores(list(terms)), dtype=float)
        return sum(w * np.asarray(self.bm25.get_scores([t]), dtype=float) for t, w in terms.items())
    def context_index(self, contexts: list[str]) -> tuple[PassageIndex, np.ndarray]:
        "An index of the distinct `contexts` (one per passage) and each passage's row in it; built once, then kept."
        key = tuple(contexts)
        if self._contexts is None or self._contexts[0] != key:
            rows = {c: i for i, c in enumerate(dict.fromkeys(key))}
            self._contexts = key, PassageIndex(list(rows)), np.array([rows[c] for c in key], dtype=int)
        return self._contexts[1:]

def unit(s: np.ndarray) -> np.ndarray:
    "Scores scaled so the best is 1 (all zeros stay zeros)."
    return s / s.max() if len(s) and s.max() > 0 else s

@dataclass(frozen=True)
class RankWeights:
    "How the ranking signals are combined (see the module's docstring)."
    passage: float = 0.8    # a turn's score: its best sentence window (this much) and the whole turn (the rest)
    lead_in: float = 1.0    # the best of the `lead_turns` turns before it, `decay` per step back, in proportion
    lead_turns: int = 4     #   to its length up to `full_turn` tokens (so "Yeah." borrows nothing)
    decay: float = 0.7
    full_turn: int = 10
    follow: float = 0.2     # a little of the next turn's score (a question is relevant when its answer is)
    speaker: float = 3.0    # a named speaker's scores times 1 + speaker
    spread: int = 2         # in the top, a turn within `spread` turns of a pick counts `spread_penalty` of its score
    spread_penalty: float = 0.7

def spread(order: list[int], scores: np.ndarray, k: int, gap: int = 2, penalty: float = 0.7) -> list[int]:
    "`order` (turn indices, best first) with its top `k` re-picked greedily, turns near a pick counting `penalty` less."
    pos, sc = np.array(order, dtype=int), np.asarray(scores, dtype=float)[order]
    near, free, picked = np.zeros(len(pos), bool), np.ones(len(pos), bool), []
    for _ in range(min(k, len(pos))):
        j = int(np.argmax(np.where(free, np.where(near, sc * penalty, sc), -np.inf)))
        picked.append(j)
        free[j] = False
        near |= np.abs(pos - pos[j]) <= gap
    return [order[j] for j in picked + [j for j in range(len(pos)) if free[j]]]

def sentence_windows(text: str, start: int, end: int, size: int = 3) -> list[tuple[int, int]]:
    "Spans of every run of `size` consecutive sentences of `text[start:end]` (the whole of it if shorter)."
    sents = sentence_spans(text, start, end)
    if not sents: return []
    return [(sents[j][0], sents[min(j + size, len(sents)) - 1][1]) for j in range(max(0, len(sents) - size) + 1)]

def lead_in(s: np.ndarray, turns: int = 4, decay: float = 0.7) -> np.ndarray:
    "For each turn, the best score among the `turns` before it, discounted by `decay` per step back."
    out = np.zeros_like(s)
    for d in range(1, turns + 1):
        if d < len(s): out[d:] = np.maximum(out[d:], s[:-d] * decay ** (d - 1))
    return out

class TurnIndex:
    "BM25 indexes over a transcript's turns and over their sentence windows, built once per transcript."
    def __init__(self, tr: Transcript, window: int = 3):
        self.speakers = [t.speaker for t in tr.turns]
        self.turns = PassageIndex([tr.turn_text(t) for t in tr.turns])
        self.lengths = np.array([len(t) for t in self.turns.tokens], dtype=float)
        spans = [(t.index, a, b) for t in tr.turns for a, b in sentence_windows(tr.text, t.start, t.end, window)]
        self.windows = PassageIndex([tr.text[a:b] for _, a, b in spans])
        self.owner = np.array([i for i, _, _ in spans], dtype=int)

    def scores(self, question: str, synonyms=(), weights: RankWeights | None = None) -> np.ndarray:
        "Every turn's fused score for `question` (not normalised)."
        w = weights or RankWeights()
        named, rest = find_speakers(question, set(self.speakers))
        terms = question_terms(rest, synonyms) or question_terms(question, synonyms)
        best = np.zeros(len(self.speakers))
        if len(self.owner): np.maximum.at(best, self.owner, self.windows.scores(terms))
        s = (1 - w.passage) * unit(self.turns.scores(terms)) + w.passage * unit(best)
        said = np.minimum(1, self.lengths / max(w.full_turn, 1))
        s = s + w.lead_in * said * lead_in(s, w.lead_turns, w.decay) + w.follow * np.append(s[1:], 0.0)
        return s * np.where([sp in named for sp in self.speakers], 1 + w.speaker, 1) if named else s

def rank_turns(question: str, tr: Transcript, roles=None, top_k: int | None = None, synonyms=(),
               index: TurnIndex | None = None, weights: RankWeights | None = None) -> list[tuple[int, float]]:
    "Turn indices of `tr` for `question`, best first, with scores (1.0 for the best); `roles` keeps only those speakers'."
    w = weights or RankWeights()
    s = (index or TurnIndex(tr)).scores(question, synonyms, w)
    role_of = {sp.name: sp.role for sp in tr.speakers}
    cand = [t.index for t in tr.turns if s[t.index] > 0 and (roles is None or role_of.get(t.speaker) in roles)]
    if not cand: return []
    order = [cand[j] for j in np.argsort(-s[cand], kind='stable')]
    order = spread(order, s, top_k or 10, w.spread, w.spread_penalty)[:top_k]
    top = s[order[0]]
    return [(i, round(float(s[i] / top), 4)) for i in order]

def rank_quotes(question: str, quotes: list[Quote], top_k: int = 10, synonyms=(), index: PassageIndex | None = None,
                per_speaker: int | None = None, weights: RankWeights | None = None) -> list[Quote]:
    "The `top_k` quotes for `question` by BM25 of the quote and of its question, with normalised scores."
    if not quotes: return []
    w = weights or RankWeights()
    index = index or PassageIndex([q.text for q in quotes])
    named, rest = find_speakers(question, {q.speaker for q in quotes})
    terms = question_terms(rest, synonyms) or question_terms(question, synonyms)
    s = unit(index.scores(terms))
    if w.lead_in and any(q.context for q in quotes):
        contexts, rows = index.context_index([q.context for q in quotes])
        s = s + w.lead_in * unit(contexts.scores(terms))[rows]
    if named: s = s * np.where([q.speaker in named for q in quotes], 1 + w.speaker, 1)
    order = np.argsort(-s, kind='stable')
    order = order[s[order] > 0].tolist()
    if not order: return []
    picked = diversify(order, lambda i: (quotes[i].file, quotes[i].speaker), top_k, per_speaker)
    return [Quote(**{**vars(quotes[i]), 'score': round(float(s[i] / s[order[0]]), 4)}) for i in picked]
