"""What the parser reads out of every mail of a corpus, and what changed between two runs.

    python -m bench.mail_fidelity snapshot CORPUS_DIR OUT.json   # one line of facts per mail
    python -m bench.mail_fidelity diff BEFORE.json AFTER.json    # per fact: how many mails changed

The facts are the ones mail fidelity is judged on: sender found (and from which header),
subject and body present, U+FFFD and mojibake in them, undecoded encoded words left over,
attachments (count and names), signed/encrypted, calendar events, and the repairs applied.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from helpdesk.mailgateway.parse import UnreadableMail, parse_message

_NOT_MAIL = {"LICENSE.upstream", "README.md"}
# UTF-8 read as windows-1252/latin-1 (Ã©, â€™), and C1 controls: text decoded with the wrong charset.
_MOJIBAKE = re.compile(r"[ÃÂ][\u0080-\u00bf\u2018-\u203a\u0152-\u0178]|â€|[\u0080-\u009f]")
_LEFTOVER_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?")


def facts(raw: bytes) -> dict[str, Any]:
    try:
        mail = parse_message(raw)
    except UnreadableMail as exc:
        return {"error": str(exc)}
    name = mail.from_.name if mail.from_ else ""
    shown = " ".join([mail.subject, name])
    return {
        "sender": mail.sender,
        "sender_source": getattr(mail, "from_source", "from"),
        "subject": bool(mail.subject.strip()),
        "body": bool(mail.text.strip()),
        "fffd_headers": shown.count("\ufffd"),
        "fffd_body": mail.text.count("\ufffd"),
        "mojibake_headers": len(_MOJIBAKE.findall(shown)),
        "mojibake_body": len(_MOJIBAKE.findall(mail.text)),
        "leftover_words": len(_LEFTOVER_WORD.findall(shown)),
        "attachments": len(mail.attachments),
        "attachment_names": [p.filename for p in mail.attachments][:50],
        "protection": mail.protection.value if getattr(mail, "protection", None) else None,
        "calendar_events": len(getattr(mail, "calendar", [])),
        "headers": len(mail.headers),
        "repairs": sorted(getattr(mail, "repairs", [])),
        "subject_text": mail.subject[:200],
    }


def snapshot(corpus: Path, out: Path) -> None:
    rows = {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in _NOT_MAIL):
        rows[str(path.relative_to(corpus))] = facts(path.read_bytes())
    out.write_text(json.dumps(rows, ensure_ascii=False, indent=0, sort_keys=True))
    read = [r for r in rows.values() if "error" not in r]
    print(f"{len(rows)} files, {len(read)} read; sender {sum(bool(r['sender']) for r in read)}, "
          f"subject {sum(r['subject'] for r in read)}, body {sum(r['body'] for r in read)}, "
          f"U+FFFD in headers {sum(r['fffd_headers'] > 0 for r in read)} mails / body {sum(r['fffd_body'] > 0 for r in read)}, "
          f"mojibake headers {sum(r['mojibake_headers'] > 0 for r in read)} / body {sum(r['mojibake_body'] > 0 for r in read)}, "
          f"leftover encoded words {sum(r['leftover_words'] > 0 for r in read)}")


def diff(before_path: Path, after_path: Path, show: int = 8) -> None:
    before, after = json.loads(before_path.read_text()), json.loads(after_path.read_text())
    changes: dict[str, list[str]] = {}
    repairs: Counter[str] = Counter()
    for name, new in after.items():
        old = before.get(name, {})
        for repair in new.get("repairs", []):
            repairs[repair.split(":")[0]] += 1
        for key in sorted(set(old) | set(new)):
            if key in ("repairs",):
                continue
            if old.get(key) != new.get(key):
                changes.setdefault(key, []).append(f"{name}: {old.get(key)!r} -> {new.get(key)!r}")
    for key, lines in sorted(changes.items()):
        print(f"{key}: {len(lines)} mails changed")
        for line in lines[:show]:
            print("   ", line[:300])
    print("repairs applied (mails):", dict(sorted(repairs.items())))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "snapshot":
        snapshot(Path(args[0]), Path(args[1]))
    elif command == "diff":
        diff(Path(args[0]), Path(args[1]), int(args[2]) if len(args) > 2 else 8)
    else:
        sys.exit(__doc__)
