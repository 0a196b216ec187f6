"""Play a moment from its start in mpv or ffplay, or say the command that would."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

PLAYERS = ("mpv", "ffplay")


def player_command(player: str, path: str, start: float) -> list[str]:
    if player == "mpv":
        return ["mpv", f"--start={start:.2f}", "--", path]
    return ["ffplay", "-autoexit", "-ss", f"{start:.2f}", path]


def play(path: str, start: float) -> str | None:
    """Run the first installed player and wait for it; without one, return the command line to run instead."""
    for player in PLAYERS:
        if shutil.which(player):
            # the player's chatter goes to stderr, so stdout stays the results (--json)
            subprocess.run(player_command(player, path, start), check=False, stdout=sys.stderr)
            return None
    return shlex.join(player_command(PLAYERS[0], path, start))
