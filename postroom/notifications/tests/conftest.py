"""The comments test scene (Alice's private conversation, one shared with Support) for the
notification tests too."""

from postroom.comments.tests.conftest import comment_as, scene  # noqa: F401 (fixtures)
