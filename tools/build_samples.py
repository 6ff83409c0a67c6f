"""Build the .docx and .pdf demo transcripts for flexxray_nb from their plain-text sources.

The sources live in ``tools/samples_src/`` and use one simple format:

    Title: ...                  <- header block: one ``Key: value`` per line
    Network: ...
    ...
    <blank line>
    FICTIONAL TRANSCRIPT: ...   <- the fiction notice (kept verbatim)
    <blank line>
    Bio: ...                    <- one paragraph
    <blank line>
    Disclaimer: ...             <- one paragraph
    <blank line>
    ===                         <- end of the header
    <blank line>
    Speaker Name: text          <- first paragraph of a turn
    <blank line>
    more text                   <- continuation paragraph (no label)

Outputs (written to ``flexxray_nb/samples/``):

* ``Jordan_Blake - ... .docx`` via python-docx: the header as a 2-column Key | Value table,
  then the fiction notice, bio and disclaimer, then one paragraph per transcript paragraph,
  with the speaker label of each turn as a bold run.
* ``Food Safety and Recall Consultant - Expert Call.pdf`` via fpdf2: Helvetica, Letter,
  running header and "Page N of M" footer, bold speaker label followed by the text.

Both outputs are deterministic: fixed metadata dates, and the docx zip is rewritten with fixed
member timestamps, so rerunning the script writes identical bytes (for the same library versions).

Usage (from the repository root)::

    .venv/bin/python tools/build_samples.py
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from docx import Document
from docx.shared import Pt
from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = ROOT / "tools" / "samples_src"
OUT_DIR = ROOT / "flexxray_nb" / "samples"

DOCX_NAME = "Jordan_Blake - Former Chief Commercial Officer - Follow Up (07.22.2025)"
PDF_NAME = "Food Safety and Recall Consultant - Expert Call"

# Fixed timestamps so that reruns produce identical files.
FIXED_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip member can carry

FICTION_PREFIX = "FICTIONAL TRANSCRIPT:"
HEADER_END = "==="
# Speakers who are not named in the header but may open or close a call.
EXTRA_SPEAKERS = ("Moderator", "Operator")
HONORIFICS = ("Dr.", "Mr.", "Ms.", "Mrs.", "Prof.")
# What a speaker label looks like: one to four capitalised words before ": ".
LABEL_RE = re.compile(r"^([A-Z][A-Za-z.'-]*(?: [A-Z][A-Za-z.'-]*){0,3}): (.+)$", re.S)


@dataclass
class Paragraph:
    """One transcript paragraph; ``speaker`` is set only on the first paragraph of a turn."""

    text: str
    speaker: str | None = None


@dataclass
class Transcript:
    header: dict[str, str] = field(default_factory=dict)  # ordered Key -> value
    fiction: str = ""
    bio: str = ""
    disclaimer: str = ""
    paragraphs: list[Paragraph] = field(default_factory=list)


def _blocks(text: str) -> list[str]:
    """Split text into blank-line separated blocks, each block's lines joined by spaces."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return [" ".join(line.strip() for line in b.splitlines()) for b in blocks if b.strip()]


def _speaker_names(header: dict[str, str]) -> set[str]:
    """Names allowed as speaker labels: the expert and interviewer(s) from the header."""
    names = set(EXTRA_SPEAKERS)
    people = [header.get("Expert", "")]
    # "Interviewer: Name, Title, Firm" (several interviewers separated by ";")
    people += [p.split(",")[0] for p in header.get("Interviewer", "").split(";")]
    for person in people:
        person = person.strip()
        if not person:
            continue
        names.add(person)
        for h in HONORIFICS:  # "Dr. Samuel Ortiz" speaks as "Samuel Ortiz"
            if person.startswith(h + " "):
                names.add(person[len(h) + 1 :])
    return names


def parse_transcript(path: Path) -> Transcript:
    """Parse one source file; raise ValueError on anything that does not fit the format."""
    raw = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    head, sep, body = raw.partition(f"\n{HEADER_END}\n")
    if not sep:
        raise ValueError(f"{path.name}: no '{HEADER_END}' line")
    t = Transcript()
    for block in re.split(r"\n\s*\n", head.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        first = lines[0]
        if first.startswith(FICTION_PREFIX):
            t.fiction = " ".join(lines)
        elif first.startswith("Bio:"):
            t.bio = " ".join(lines)[len("Bio:") :].strip()
        elif first.startswith("Disclaimer:"):
            t.disclaimer = " ".join(lines)[len("Disclaimer:") :].strip()
        else:  # the Key: value block
            for line in lines:
                key, colon, value = line.partition(": ")
                if not colon:
                    raise ValueError(f"{path.name}: bad header line {line!r}")
                t.header[key.strip()] = value.strip()
    if not (t.fiction and t.bio and t.disclaimer and "Title" in t.header):
        raise ValueError(f"{path.name}: header needs Title, the fiction notice, Bio and Disclaimer")

    speakers = _speaker_names(t.header)
    for block in _blocks(body):
        m = LABEL_RE.match(block)
        if m and m.group(1) in speakers:
            t.paragraphs.append(Paragraph(m.group(2).strip(), m.group(1)))
        elif m:
            raise ValueError(f"{path.name}: unknown speaker label {m.group(1)!r}")
        elif not t.paragraphs:
            raise ValueError(f"{path.name}: transcript starts without a speaker label")
        else:
            t.paragraphs.append(Paragraph(block))
    return t


# --------------------------------------------------------------------------- docx


def _normalize_zip(data: bytes) -> bytes:
    """Rewrite a zip (docx) with fixed member timestamps and attributes, keeping member order."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 0
            zout.writestr(info, zin.read(item.filename))
    return out.getvalue()


def build_docx(t: Transcript, dest: Path) -> None:
    """Write the transcript as a Word document using the default template's styles."""
    doc = Document()

    props = doc.core_properties
    props.title = t.header["Title"]
    props.author = t.header.get("Network", "")
    props.last_modified_by = "flexxray_nb build_samples.py"
    props.comments = t.fiction
    props.subject = "Expert call transcript (fictional demo data)"
    props.keywords = "FlexXray; expert call; fictional"
    props.created = props.modified = FIXED_DATE.replace(tzinfo=None)
    props.last_printed = FIXED_DATE.replace(tzinfo=None)
    props.revision = 1

    table = doc.add_table(rows=1, cols=2)
    table.style = "Table Grid"
    for cell, label in zip(table.rows[0].cells, ("Key", "Value")):
        cell.paragraphs[0].add_run(label).bold = True
    for key, value in t.header.items():
        row = table.add_row().cells
        row[0].text = key
        row[1].text = value

    notice = doc.add_paragraph(t.fiction)
    notice.paragraph_format.space_before = Pt(12)  # room after the table
    doc.add_paragraph(f"Bio: {t.bio}")
    doc.add_paragraph(f"Disclaimer: {t.disclaimer}")

    for para in t.paragraphs:
        p = doc.add_paragraph()
        if para.speaker:
            p.add_run(f"{para.speaker}:").bold = True
            p.add_run(f" {para.text}")
        else:
            p.add_run(para.text)

    buf = io.BytesIO()
    doc.save(buf)
    dest.write_bytes(_normalize_zip(buf.getvalue()))


# --------------------------------------------------------------------------- pdf

# Helvetica is a core PDF font limited to latin-1; map typographic characters to ASCII.
_ASCII_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u2013": "-", "\u2014": "--", "\u2015": "--", "\u2212": "-",
        "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
        "\u2022": "-", "\u00b7": "-",
    }
)


def to_latin1(text: str) -> str:
    """Transliterate to text Helvetica can show; anything else left over becomes '?'."""
    return text.translate(_ASCII_MAP).encode("latin-1", "replace").decode("latin-1")


class TranscriptPDF(FPDF):
    """FPDF with a running header line and a 'Page N of M' footer on every page."""

    def __init__(self, running_header: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="Letter")
        self.running_header = to_latin1(running_header)

    def header(self) -> None:
        self.set_font("Helvetica", "", 8)
        self.set_text_color(100, 100, 100)
        self.cell(0, 5, self.running_header, align="C")
        self.ln(6)
        self.set_draw_color(180, 180, 180)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(6)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(100, 100, 100)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def build_pdf(t: Transcript, dest: Path) -> None:
    """Write the transcript as a paginated PDF (Helvetica, Letter)."""
    network = t.header.get("Network", "")
    pdf = TranscriptPDF(f"{network} | {t.header['Title']} | FICTIONAL")
    pdf.alias_nb_pages()  # "{nb}" in the footer becomes the total page count
    pdf.set_margins(left=22, top=15, right=22)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(to_latin1(t.header["Title"]))
    pdf.set_author(to_latin1(network))
    pdf.set_subject("Expert call transcript (fictional demo data)")
    pdf.set_keywords("FlexXray; expert call; fictional")
    pdf.set_creator("flexxray_nb build_samples.py")
    pdf.add_page()

    line_h = 5.5  # body line height, mm (11 pt text)
    gap = 3.5  # space between paragraphs, mm

    # Header block: title, then Key: value lines, then the notice, bio and disclaimer.
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, to_latin1(t.header["Title"]))
    pdf.ln(2)
    for key, value in t.header.items():
        if key == "Title":
            continue
        pdf.set_font("Helvetica", "B", 10)
        pdf.write(line_h, to_latin1(f"{key}: "))
        pdf.set_font("Helvetica", "", 10)
        pdf.write(line_h, to_latin1(value))
        pdf.ln(line_h)
    pdf.ln(gap)
    pdf.set_font("Helvetica", "B", 10)
    pdf.multi_cell(0, line_h, to_latin1(t.fiction))
    pdf.ln(gap)
    for label, text in (("Bio", t.bio), ("Disclaimer", t.disclaimer)):
        pdf.set_font("Helvetica", "B", 10)
        pdf.write(line_h, f"{label}: ")
        pdf.set_font("Helvetica", "I" if label == "Disclaimer" else "", 10)
        pdf.write(line_h, to_latin1(text))
        pdf.ln(line_h + gap)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(gap + 2)

    # Transcript: bold label and text on the same line; continuation paragraphs plain.
    for para in t.paragraphs:
        if para.speaker:
            pdf.set_font("Helvetica", "B", 11)
            pdf.write(line_h, to_latin1(f"{para.speaker}: "))
        pdf.set_font("Helvetica", "", 11)
        pdf.write(line_h, to_latin1(para.text))
        pdf.ln(line_h + gap)

    pdf.output(str(dest))


# --------------------------------------------------------------------------- main


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    jobs = ((DOCX_NAME, ".docx", build_docx), (PDF_NAME, ".pdf", build_pdf))
    for name, ext, build in jobs:
        transcript = parse_transcript(SRC_DIR / f"{name}.txt")
        dest = OUT_DIR / f"{name}{ext}"
        build(transcript, dest)
        turns = sum(1 for p in transcript.paragraphs if p.speaker)
        print(f"wrote {dest.relative_to(ROOT)} ({turns} turns, {len(transcript.paragraphs)} paragraphs)")


if __name__ == "__main__":
    main()
