"""`city311 cases` against a database the pipeline filled."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from desk.migrate import upgrade_async
from desk.models import Outbox
from desk.store import Store
from tests.cli.test_cli import run_cli
from tests.desk.test_pipeline import email, seeded
from tests.support import FakeClock


async def test_list_show_approve_from_the_terminal(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'city311.db'}"
    await upgrade_async(url)
    store = Store.from_url(url)
    desk = await seeded(store, FakeClock())
    got = await desk.receive(email(1))
    await desk.process(got.case_id or 0)

    listed = run_cli("cases", "list", "--json", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["ref"] for r in rows] == [got.case_ref]
    assert rows[0]["status"] == "drafted" and rows[0]["city"] == "Fall River, MA"

    shown = run_cli("cases", "show", got.case_ref or "", data_dir=tmp_path)
    assert "How do we improve our bond rating?" in shown.stdout
    assert "received" in shown.stdout

    approved = run_cli("cases", "approve", got.case_ref or "", data_dir=tmp_path)
    assert approved.returncode == 0, approved.stderr
    again = run_cli("cases", "approve", got.case_ref or "", data_dir=tmp_path)
    assert again.returncode != 0 and "already approved" in again.stderr
    async with store.session() as session:
        replies = (await session.execute(select(Outbox).where(Outbox.kind == "reply"))).all()
    assert len(replies) == 1
    await store.close()

    missing = run_cli("cases", "show", "C-2026-9999", data_dir=tmp_path)
    assert missing.returncode != 0 and "no case C-2026-9999" in missing.stderr
