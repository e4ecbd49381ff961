"""bot/channels/paging.py: the line packer Telegram and WeChat share."""

from bot.channels.paging import pack_lines


def _cut_at(limit: int):
    return lambda line: limit


def test_lines_packed_up_to_the_limit_and_never_cut_when_they_fit() -> None:
    pieces = pack_lines(["aaaa", "bb", "cc", "ddddd"], 8, len, _cut_at(8))
    assert pieces == ["aaaa\nbb", "cc\nddddd"]
    assert all(len(p) <= 8 for p in pieces)


def test_a_long_line_after_others_keeps_its_place() -> None:
    """The lines before an enormous one are sent before it, not after its first piece."""
    pieces = pack_lines(["before", "x" * 20, "after"], 8, len, _cut_at(8))
    assert pieces == ["before", "xxxxxxxx", "xxxxxxxx", "xxxx", "after"]
    assert "".join(pieces).replace("\n", "") == "before" + "x" * 20 + "after"


def test_size_and_cut_are_the_channels() -> None:
    """Measured in UTF-8 bytes and cut between characters, as WeChat needs."""
    pieces = pack_lines(["一" * 10], 7, lambda s: len(s.encode()), lambda s: 2)
    assert pieces == ["一一"] * 5
    assert pack_lines(["", "  "], 7, len, _cut_at(7)) == []
