"""Run the mail intake alone, as the worker does, until killed (for the crash tests).

    python -m tests.mail.intake_worker DATABASE_URL DATA_DIR IMAP_HOST IMAP_PORT USER PASSWORD
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from city311.wiring import build_service
from desk.settings import DatabaseSettings, MailSettings, Settings
from mail.intake import ImapIntake


async def main(argv: list[str]) -> None:
    db_url, data_dir, host, port, user, password = argv
    settings = Settings(
        data_dir=Path(data_dir), database=DatabaseSettings(url=db_url),
        mail=MailSettings(address="desk@311.test", imap_host=host, imap_port=int(port),
                          imap_security="plain", imap_user=user, imap_password=password,
                          imap_poll_seconds=3600.0),
    )
    service = await build_service(settings, migrate=False, with_classifier=False)
    # Store and route only: drafting is the worker's next step, and not what is under test.
    intake = ImapIntake(settings.mail, service.store, service.desk.receive_many)
    stop = asyncio.Event()
    try:
        await intake.run(stop)
    finally:
        await service.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1:]))
