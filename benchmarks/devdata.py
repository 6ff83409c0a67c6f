"""Shared helpers for benchmarks and tests that read the evaluation data in ../shared/data (never copied here)."""
import json, os, pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get('FLEXXRAY_EVAL_DATA', ROOT.parent / 'shared' / 'data'))

def available() -> bool:
    "Whether the evaluation data is present (a user's clone may not have it)."
    return (DATA / 'eval_dev.jsonl').is_file()

def records(path=None):
    "The transcripts of an eval split, one dict each."
    with open(path or DATA / 'eval_dev.jsonl', encoding='utf-8') as f:
        for line in f:
            if line.strip(): yield json.loads(line)

def render(rec) -> str:
    "A record as an expert-network-style text file: `Speaker: text` paragraphs, as the shared samples are written."
    return '\n\n'.join(f"{t['speaker']}: {t['text']}" for t in rec['turns'] if t['text'].strip()) + '\n'
