"The benchmarks' baseline rankers (benchmarks/baselines.py) do what the README's retrieval table says they do."
import pathlib, sys
import numpy as np
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'benchmarks'))
from baselines import PassageIndex, query_tokens, question_terms, rank_quotes, rank_turns, sentence_windows, spread
from flexxray_nb.core import Quote
from flexxray_nb.parse import parse_text
from flexxray_nb.roles import assign_roles

CALL = '''Sarah Kim: Welcome, Daniel. Let's start with pricing. How do you charge for an inspection?

Daniel Reyes: Per unit, mostly. Weekends cost a premium, and rush jobs more again.

Sarah Kim: And how quick is the turnaround?

Daniel Reyes: Same day, usually. We scan overnight and release good pallets by morning.

Sarah Kim: Who else competes on pricing?

Ana Ruiz: I can take that. Two regional labs undercut them, but they are slow.'''

def test_query_terms_drop_boilerplate():
    assert query_tokens('How does FlexXray turnaround help?', ['speed']) == ['flexxray', 'turnaround', 'help', 'speed']
    assert question_terms("Summarize the discussion about the team's pricing and price rises.") == {'team': 1, 'pric': 2, 'rise': 1}

def test_passage_index_scores_and_contexts():
    idx = PassageIndex(['We scanned the pallets overnight.', 'Glass and metal were the usual contaminants.', 'Price was high.'])
    assert int(np.argmax(idx.scores(query_tokens('Which contaminants, glass or metal?')))) == 1
    assert np.allclose(idx.scores({'glass': 2.0}), 2 * idx.scores(['glass']))
    ctx, rows = idx.context_index(['Any contaminants?', 'Any contaminants?', 'Pricing?'])
    assert (len(ctx), list(rows)) == (2, [0, 0, 1])
    assert len(PassageIndex([]).scores(['glass'])) == 0

def test_rank_turns_borrows_the_lead_in_and_spreads():
    t = 'We scan overnight. Good pallets ship by morning. Rejects are re-run. Reports follow.'
    assert [t[a:b] for a, b in sentence_windows(t, 0, 18)] == ['We scan overnight.']
    assert spread([1, 2, 6, 3], np.array([0.0, 1.0, 0.9, 0.5, 0.0, 0.0, 0.65]), k=3) == [1, 6, 2, 3]
    tr = assign_roles(parse_text(CALL))
    assert rank_turns('What did Daniel Reyes say about pricing?', tr, roles=('expert',))[0] == (1, 1.0)
    assert [i for i, _ in rank_turns('Summarize the discussion about turnaround.', tr)][:2] == [2, 3]
    assert rank_turns('zebra', tr) == []

def test_rank_quotes_uses_context_and_named_speakers():
    qs = [Quote(str(i), 't', 'f.txt', sp, 'expert', i, 0, 1, t, ctx) for i, (sp, t, ctx) in enumerate([
        ('Dana Cole', 'Turnaround was fast: pallets in by morning.', 'Tell me about service.'),
        ('Ed Park', 'Same day, nearly always.', 'How fast was their turnaround?'),
        ('Ed Park', 'The portal had images of every pallet.', 'What about reporting?')])]
    assert [q.id for q in rank_quotes('How fast was the turnaround?', qs)] == ['0', '1']
    assert [q.id for q in rank_quotes('What did Ed Park say about turnaround?', qs)] == ['1', '0']
    assert rank_quotes('zebra', qs) == []
