"""Group names: built only by sessions/groups.py, from primary keys, valid for every layer.

The source scan proves no module of ours calls group_add/group_send/group_discard with a name it
formatted itself (a literal, an f-string, `%` or `.format`), and that no other module writes an
f-string that starts like one of our group names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from channels.layers import BaseChannelLayer

from sessions import groups

ROOT = Path(__file__).resolve().parents[2]
SCANNED_APPS = ("courses", "sessions", "voice", "analytics", "tutor_project")
GROUP_METHODS = {"group_add", "group_send", "group_discard"}
GROUP_PREFIX = re.compile(r"^(room|session|conversation|tenant|user)\.")


# --- The builders -----------------------------------------------------------------------------


def test_names_are_dotted_primary_keys():
    assert groups.room_group(12) == "room.12"
    assert groups.session_monitor_group(5) == "session.5.monitor"
    assert groups.conversation_group(7) == "conversation.7"
    assert groups.tenant_group(3) == "tenant.3"
    assert groups.user_group(9) == "user.9"


@pytest.mark.parametrize("bad", ["12", 1.0, None, True, "1; drop", b"1"])
def test_only_integers_are_accepted(bad):
    with pytest.raises(TypeError):
        groups.room_group(bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_only_positive_keys_are_accepted(bad):
    with pytest.raises(ValueError, match="positive"):
        groups.session_monitor_group(bad)


def test_names_are_valid_for_channels_and_short():
    largest = 2**63 - 1  # a PostgreSQL bigint
    for builder in (
        groups.room_group, groups.session_monitor_group, groups.conversation_group,
        groups.tenant_group, groups.user_group,
    ):
        name = builder(largest)
        assert len(name) < 100
        assert BaseChannelLayer().require_valid_group_name(name)


# --- The source scan --------------------------------------------------------------------------


def _is_formatted_string(node: ast.AST) -> bool:
    """A literal, an f-string, "..." % x, "..." + x or "...".format(x)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return _is_formatted_string(node.left) or _is_formatted_string(node.right)
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and _is_formatted_string(node.func.value)
    )


def _group_argument(call: ast.Call) -> ast.AST | None:
    for keyword in call.keywords:
        if keyword.arg == "group":
            return keyword.value
    return call.args[0] if call.args else None


def _joined_str_prefix(node: ast.JoinedStr) -> str:
    first = node.values[0] if node.values else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""


def violations_in(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            argument = _group_argument(node) if name in GROUP_METHODS else None
            if argument is not None and _is_formatted_string(argument):
                found.append(f"{filename}:{node.lineno}: {name}() with a group name built in place")
        if isinstance(node, ast.JoinedStr) and GROUP_PREFIX.match(_joined_str_prefix(node)):
            found.append(f"{filename}:{node.lineno}: f-string shaped like a group name")
    return found


def project_sources() -> list[Path]:
    return sorted(
        path
        for app in SCANNED_APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and path != ROOT / "sessions" / "groups.py"
    )


def test_the_scan_catches_names_built_in_place():
    bad = '''
async def f(self, layer, room):
    await self.channel_layer.group_add("room.1", self.channel_name)
    await layer.group_send(f"room.{room.id}", {})
    await layer.group_send(group="session.%d.monitor" % room.session_id, message={})
    await layer.group_discard("tenant.{}".format(1), "x")
    name = f"user.{room.id}"
'''
    lines = {int(v.split(":")[1]) for v in violations_in(bad, "bad.py")}
    assert lines == {3, 4, 5, 6, 7}
    good = '''
async def f(self, layer, room):
    await layer.group_send(groups.room_group(room.id), {})
    for group in self.groups:
        await self.channel_layer.group_add(group, self.channel_name)
    label = f"Room {room.number}"
'''
    assert violations_in(good, "good.py") == []


def test_no_module_builds_a_group_name_itself():
    sources = project_sources()
    assert any(path.name == "consumers.py" for path in sources)  # the scan sees our code
    found = [v for path in sources for v in violations_in(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "\n".join(found)
