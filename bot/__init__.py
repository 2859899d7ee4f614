"""The Slack channel: intake, review cards with approval, and replies in the same thread."""

__all__: list[str] = []
