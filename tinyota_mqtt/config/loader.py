"""Read ``config.yaml`` into the frozen model of :mod:`.model`, or refuse it with every problem found.

Two stages, as ESPHome does it. The *schema* stage walks the composed YAML node tree (nodes keep
their start line, constructed Python values would not) and converts it section by section through
small declarative tables. The *cross-reference* stage then checks what points at what (device →
group → image, admin account vs. device accounts). Problems from both stages come back in one
:class:`~tinyota_mqtt.errors.ConfigError`, each reading ``[file:line] key.path: what is wrong. What
to do.`` No message ever quotes a password or a credential-bearing URL.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.composer import Composer, ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from tinyota_mqtt.config.model import (
    CONFIRM_MODES,
    ID_PATTERN,
    KINDS,
    MAX_ID_LENGTH,
    MAX_PREFIX_LENGTH,
    PLATFORMS,
    Account,
    Config,
    Device,
    Group,
    HomeAssistantConfig,
    Image,
    IPNetwork,
    Limits,
    MqttConfig,
    ServerConfig,
    TLSFiles,
)
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.core import semver, tasmota, tokens
from tinyota_mqtt.core.passwords import SCHEME, Password, Secret, check_hash_format, is_hashed
from tinyota_mqtt.errors import ConfigError

__all__ = ["load_config", "parse_config", "redact"]

_YAML_TAG = "tag:yaml.org,2002:"
# The composer recurses once per nesting level; a hostile or garbled file could otherwise end in
# RecursionError instead of a ConfigError. Real configs nest four levels.
_MAX_DEPTH = 64
_ID = re.compile(ID_PATTERN)
_DECIMAL = re.compile(r"[-+]?[0-9][0-9_]*")
# ``${NAME}``, ``${NAME:-fallback}`` or ``$$``; an unclosed ``${`` is caught by the empty group.
_ENV_REF = re.compile(r"\$\$|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_ENV_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?", re.ASCII)
_DURATION_UNITS: Mapping[str, float] = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0})
# Timers far beyond this are typos, and huge floats overflow the event loop's call_later.
_MAX_DURATION = 30 * 86400.0
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmg]i?b|b)?", re.ASCII | re.IGNORECASE)
_SIZE_UNITS: Mapping[str, int] = MappingProxyType(
    {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
)
_BIND_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # a name, IPv4 or bare IPv6
_NETLOC = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


# --------------------------------------------------------------------------- reading YAML


class _DepthLimit:
    """The composer's recursion, bounded: a nesting limit on top of PyYAML's own composer."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise ComposerError(None, None, f"nested more than {_MAX_DEPTH} levels deep", mark)
            node: Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return node
        finally:
            self._depth -= 1


class _LineLoader(_DepthLimit, yaml.SafeLoader):
    """Pure-Python SafeLoader used only up to the node stage."""


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _FastLineLoader(_DepthLimit, Composer, CParser, Resolver):
        """libyaml scans and parses (eight times faster on a 1,000-device file: start-up time);
        PyYAML's own composer builds the nodes, so the depth limit still holds. Node marks and
        error marks carry the same line numbers as the pure-Python loader's."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)

    _Loader: type[_LineLoader] | type[_FastLineLoader] = _FastLineLoader
else:  # PyYAML built without libyaml
    _Loader = _LineLoader


class _Invalid(Exception):
    """A value is wrong. The walker adds file:line and the key path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Reported(Exception):
    """Problems were already recorded further down; the caller just has no value to use."""


class _KeepDefault(Exception):
    """A section written with no value (``limits:``): the model's default stands."""


@dataclass
class _Reader:
    """Everything one parse needs, passed down instead of living in module state."""

    source_name: str
    env: Mapping[str, str]
    base_dir: Path | None
    resolver: Resolver = field(default_factory=Resolver)
    problems: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # key path -> line of its key
    declared: dict[str, list[str]] = field(default_factory=dict)  # "groups" -> ids as written
    failed: set[str] = field(default_factory=set)  # key paths whose value could not be used

    def add(self, line: int | None, path: str, message: str) -> None:
        where = f"[{self.source_name}:{line}]" if line else f"[{self.source_name}]"
        self.problems.append(f"{where} {path}: {message}" if path else f"{where} {message}")


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _kind(tag: str) -> str:
    """The YAML 1.1 type name of a standard tag ("str", "int", "bool", ...); "" for custom tags."""
    return tag[len(_YAML_TAG) :] if tag.startswith(_YAML_TAG) else ""


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and _kind(node.tag) == "null"


def _describe(kind: str, text: str) -> str:
    if kind == "null":
        return "nothing (null)"
    if kind == "bool":
        return f"the boolean {text}"
    if kind in ("int", "float"):
        return f"the number {text}"
    return f"the text {_clip(text)}"


def _describe_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _describe(_kind(node.tag), str(node.value))


def _wrong_type(want: str, kind: str, text: str) -> str:
    message = f"expected {want}, got {_describe(kind, text)}"
    if kind == "str" and (_DECIMAL.fullmatch(text) or text in ("true", "false")):
        message += "; remove the quotes"
    return message


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    by_lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[hits[0]] if hits else None


def _expand(text: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        if not match["close"]:
            raise _Invalid("'${' has no closing '}' (write $$ for a literal '$')")
        body = _ENV_BODY.fullmatch(match["body"])
        if body is None:
            raise _Invalid(
                f"{_clip(match[0])} is not a variable reference: use ${{NAME}} or ${{NAME:-fallback}}"
                " with NAME made of letters, digits and '_' (write $$ for a literal '$')"
            )
        name, fallback = body["name"], body["default"]
        value = env.get(name)
        # Like the shell's ${NAME:-x}: an empty variable counts as unset when there is a fallback.
        if value is None or (value == "" and fallback is not None):
            if fallback is None:
                raise _Invalid(
                    f"environment variable {name} is not set; set it, or give a fallback with ${{{name}:-value}}"
                )
            return fallback
        return value

    return _ENV_REF.sub(substitute, text)


def _scalar(r: _Reader, node: Node, want: str) -> tuple[str, str]:
    """(kind, text) of a scalar after ``${VAR}`` expansion; anything else is refused."""
    if not isinstance(node, ScalarNode):
        raise _Invalid(f"expected {want}, got {_describe_node(node)}")
    kind = _kind(node.tag)
    if not kind:
        raise _Invalid(f"the tag {node.tag} is not supported (secrets come in as ${{NAME}})")
    text = str(node.value)
    if kind == "str":
        expanded = _expand(text, r.env)
        if expanded != text:
            # A substituted value reads as if written there unquoted, so `port: ${PORT}` is a number.
            tag = r.resolver.resolve(ScalarNode, expanded, (True, False))  # type: ignore[no-untyped-call]
            kind, text = _kind(tag), expanded
    return kind, text


# --------------------------------------------------------------------------- value converters

Convert = Callable[[_Reader, Node], Any]


def _text(r: _Reader, node: Node, *, empty_ok: bool = False) -> str:
    # Any scalar is read as the text written, so `name: 1.10` stays "1.10", not 1.1.
    _, text = _scalar(r, node, "text")
    if not text and not empty_ok:
        raise _Invalid("must not be empty")
    return text


def _string(*, empty_ok: bool = False) -> Convert:
    return lambda r, node: _text(r, node, empty_ok=empty_ok)


def _host(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    if not _BIND_HOST.fullmatch(text):
        raise _Invalid(f"{_clip(text)} is not a host name or address; write just the host, e.g. 0.0.0.0")
    return text


def _integer(low: int, high: int) -> Convert:
    def convert(r: _Reader, node: Node) -> int:
        kind, text = _scalar(r, node, "a whole number")
        if kind != "int":
            raise _Invalid(_wrong_type("a whole number", kind, text))
        if not _DECIMAL.fullmatch(text):
            # YAML 1.1 also reads 0x1F, 0o17 and 1:30 (base 60) as ints; in a port that is a typo.
            raise _Invalid(f"write {_clip(text)} as a plain decimal number")
        try:
            value = int(text.replace("_", ""))
        except ValueError:  # more digits than int() accepts
            raise _Invalid("is not a usable number") from None
        if not low <= value <= high:
            raise _Invalid(f"{value} is out of range {low}..{high}")
        return value

    return convert


def _boolean(r: _Reader, node: Node) -> bool:
    kind, text = _scalar(r, node, "true or false")
    if kind != "bool":
        raise _Invalid(_wrong_type("true or false", kind, text))
    if text.lower() not in ("true", "false"):
        # YAML 1.1 turns yes/no/on/off into booleans, which bites (the "Norway problem").
        raise _Invalid(f"{_clip(text)} is not accepted as a boolean; write true or false")
    return text.lower() == "true"


def _plain_number(kind: str, text: str) -> float:
    try:
        value = float(text.replace("_", "")) if _DECIMAL.fullmatch(text) or kind == "float" else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _Invalid(f"{_clip(text)} is not a usable number")
    return value


def _duration(r: _Reader, node: Node) -> float:
    kind, text = _scalar(r, node, "a duration")
    if kind in ("int", "float"):
        seconds = _plain_number(kind, text)
    elif kind == "str" and (match := _DURATION.fullmatch(text.strip())):
        seconds = float(match[1]) * _DURATION_UNITS[match[2] or "s"]
    else:
        raise _Invalid(f"expected a duration such as 90, 90s, 10m or 1h, got {_describe(kind, text)}")
    if not 0 < seconds <= _MAX_DURATION:
        raise _Invalid(f"{_clip(text)} must be more than 0 and at most 30 days")
    return seconds


def _size(low: int, high: int) -> Convert:
    def convert(r: _Reader, node: Node) -> int:
        kind, text = _scalar(r, node, "a size")
        if kind == "int":
            value = _plain_number(kind, text)
        elif kind == "str" and (match := _SIZE.fullmatch(text.strip())):
            value = float(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]
        else:
            got = _describe(kind, text)
            raise _Invalid(f"expected a size in bytes or such as 512KiB, 16MiB or 1MB, got {got}")
        if not low <= value <= high:
            raise _Invalid(f"{_clip(text)} is out of range {low}..{high} bytes")
        return int(value)

    return convert


def _path(r: _Reader, node: Node) -> Path:
    text = _text(r, node)
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise _Invalid(f"cannot expand {_clip(text)}: no such home directory") from None
    # A config must mean the same thing whichever directory the server starts in.
    return path if r.base_dir is None else r.base_dir / path


def _ident(r: _Reader, node: Node) -> str:
    text = _text(r, node, empty_ok=True)
    problem = _id_problem(text)
    if problem:
        raise _Invalid(problem)
    return text


def _id_problem(text: str) -> str | None:
    if _ID.fullmatch(text):
        if len(text) > MAX_ID_LENGTH:
            return (f"{_clip(text)} is {len(text)} characters long; an id may have at most {MAX_ID_LENGTH} "
                    "(devices keep ids and image names in buffers of that size)")
        return None
    if not text:
        return "an empty id is not allowed; use letters, digits, '-' and '_'"
    message = (
        f"{_clip(text)} is not a valid id: use only letters, digits, '-' and '_'"
        " (ids become MQTT topic levels and Home Assistant ids)"
    )
    fixed = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return message + (f". Did you mean {fixed!r}?" if fixed else "")


def _prefix(r: _Reader, node: Node) -> str:
    text = _topic(r, node)
    if len(text) > MAX_PREFIX_LENGTH:
        raise _Invalid(f"{_clip(text)} is {len(text)} characters long; devices take a prefix of at most "
                       f"{MAX_PREFIX_LENGTH}")
    return text


def _topic(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    if any(c in text for c in "+#\0"):
        raise _Invalid(f"{_clip(text)} must not contain the MQTT wildcards '+' or '#'")
    if text.startswith("/") or text.endswith("/"):
        raise _Invalid(f"{_clip(text)} must not start or end with '/'; did you mean {text.strip('/')!r}?")
    return text


def _semver(r: _Reader, node: Node) -> str:
    _, text = _scalar(r, node, "a version")
    if semver.is_valid(text):
        return text
    message = f"{_clip(text)} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.0)"
    guess = text[1:] if text[:1] in ("v", "V") else text
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", guess):
        guess += ".0" * (2 - guess.count("."))
    if guess != text and semver.is_valid(guess):
        message += f". Did you mean '{guess}'?"
    raise _Invalid(message)


def _full_topic(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    problem = tasmota.full_topic_problem(text)
    if problem:
        raise _Invalid(f"{_clip(text)} {problem}, e.g. {tasmota.DEFAULT_FULL_TOPIC}")
    return text


def _tasmota_topic(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    problem = tasmota.topic_problem(text)
    if problem:
        raise _Invalid(f"{_clip(text)} {problem}; write the device's Topic as Tasmota shows it")
    return text


def _mac(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    plain = text.replace(":", "").replace("-", "").upper()
    if not re.fullmatch(r"[0-9A-F]{12}", plain):
        raise _Invalid(f"{_clip(text)} is not a MAC address; write it as Tasmota does, e.g. A4CF12ABCDEF")
    return plain


def _choice(options: tuple[str, ...], label: str) -> Convert:
    def convert(r: _Reader, node: Node) -> str:
        _, text = _scalar(r, node, label)
        if text in options:
            return text
        guess = _did_you_mean(text, options)
        hint = f"Did you mean '{guess}'?" if guess else "Choose one of: " + ", ".join(options) + "."
        raise _Invalid(f"{_clip(text)} is not a valid {label}. {hint}")

    return convert


def _protocol(r: _Reader, node: Node) -> str:
    kind, text = _scalar(r, node, "an MQTT protocol version")
    # 5 may be written as a number; 3.1.1 only as text (YAML has no such number).
    if (text, kind) in (("3.1.1", "str"), ("5", "int"), ("5", "str")):
        return text
    raise _Invalid(f'{_clip(text)} is not a supported MQTT protocol; write "3.1.1" or 5')


def _split_url(text: str, usage: str) -> tuple[str, str, str]:
    """(scheme, netloc, path) of a URL whose host and port are checked; query and fragment refused."""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. unbalanced [ ] around an IPv6 address
        raise _Invalid(f"{_clip(text)} is not a valid URL; {usage}") from None
    netloc = _NETLOC.fullmatch(parts.netloc)
    if any(c.isspace() for c in text) or netloc is None or parts.query or parts.fragment or "?" in text:
        raise _Invalid(f"{_clip(text)} is not a valid URL; {usage}")
    if netloc["port"] is not None and not 1 <= int(netloc["port"]) <= 65535:
        raise _Invalid(f"port {netloc['port']} is out of range 1..65535")
    return parts.scheme.lower(), parts.netloc, parts.path


def _public_url(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    if "@" in text:
        # Devices receive this base in retained MQTT messages that anyone on the broker can read.
        raise _Invalid("must not contain credentials (user:password@); devices log in with their own")
    usage = "expected http(s)://host[:port][/path], e.g. http://192.168.1.10:8000"
    if not text.lower().startswith(("http://", "https://")):
        raise _Invalid(f"{_clip(text)}: {usage}")
    scheme, netloc, path = _split_url(text, usage)
    # Announced URLs are public_url + "/fw/...", so a trailing slash would double up.
    return f"{scheme}://{netloc}{path.rstrip('/')}"


def _mqtt_url(r: _Reader, node: Node) -> str:
    text = _text(r, node)
    if text in ("embedded", "none"):  # "none": HTTP only, no MQTT side at all
        return text
    if "@" in text:
        # Checked first and never echoed: URLs get logged, and the password with them.
        raise _Invalid("must not contain credentials: put them in mqtt.username and mqtt.password")
    usage = "expected embedded, none, mqtt://host[:port] or mqtts://host[:port]"
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("mqtt", "mqtts"):
        fixes = {"tcp": "mqtt", "ssl": "mqtts", "tls": "mqtts"}
        hint = f"; did you mean {fixes[scheme]}://?" if scheme in fixes else ""
        raise _Invalid(f"{_clip(text)}: {usage}{hint}")
    scheme, netloc, path = _split_url(text, usage)
    if path.strip("/"):
        raise _Invalid(f"{_clip(text)} must not have a path; {usage}")
    return f"{scheme}://{netloc}"


def _password(r: _Reader, node: Node) -> Password:
    text = _text(r, node, empty_ok=True)
    if not text:
        raise _Invalid("must not be empty (leave the key out for no password)")
    if is_hashed(text):
        problem = check_hash_format(text)
        if problem:
            raise _Invalid(f"not a valid password hash: {problem}. Make one with `tinyota hash-password`")
    elif text.lower().startswith("pbkdf2") and "$" in text:
        raise _Invalid(f"looks like a password hash, but only {SCHEME}$… is understood")
    return Password.parse(text)


def _networks(r: _Reader, node: Node) -> tuple[IPNetwork, ...]:
    if not isinstance(node, SequenceNode):
        raise _Invalid(f"expected a list of addresses or networks, e.g. [127.0.0.1, 10.0.0.0/8], "
                       f"got {_describe_node(node)}")
    networks = []
    for item in node.value:
        text = _text(r, item)
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise _Invalid(f"{_clip(text)} is not an IP address or network (CIDR, e.g. 10.0.0.0/8); "
                           "write addresses, not host names") from None
    return tuple(networks)


def _removed(message: str) -> Convert:
    def refuse(r: _Reader, node: Node) -> Any:
        raise _Invalid(message)

    return refuse


def _secret(r: _Reader, node: Node) -> Secret:
    return Secret(_text(r, node, empty_ok=True))


# --------------------------------------------------------------------------- rollout policy
# A group's ``rollout:`` (docs/rollouts.md). The rules themselves are parsed by core/rollout.py,
# which the CLI's --waves/--window share; here they only get the file:line treatment.


def _rollout_waves(r: _Reader, node: Node) -> tuple[ro.WaveSpec, ...]:
    if isinstance(node, SequenceNode):
        waves = []
        for item in node.value:
            if isinstance(item, SequenceNode):  # [kitchen-1, kitchen-2]: a canary list
                waves.append(ro.WaveSpec(devices=tuple(_ident(r, i) for i in item.value)))
                continue
            try:
                waves.append(ro.parse_wave(_text(r, item)))
            except ro.RolloutError as exc:
                raise _Invalid(str(exc)) from None
        if not waves:
            raise _Invalid("no waves given; write e.g. [[kitchen-1], 25%, rest]")
        return tuple(waves)
    try:
        return ro.parse_waves(_text(r, node))
    except ro.RolloutError as exc:
        raise _Invalid(str(exc)) from None


def _rollout_percent(r: _Reader, node: Node) -> float:
    kind, text = _scalar(r, node, "a percentage")
    try:
        return ro.parse_percent(text, "percentage")
    except ro.RolloutError:
        raise _Invalid(f"expected a percentage such as 20%, got {_describe(kind, text)}") from None


def _rollout_halt_at(r: _Reader, node: Node) -> float | None:
    _, text = _scalar(r, node, "a percentage")
    if text.lower() in ("never", "off"):
        return None
    value = _rollout_percent(r, node)
    if value <= 0:
        raise _Invalid("0% would halt on the first failure of any size; write 'never' to switch halting off, "
                       "or a share such as 20%")
    return value


def _rollout_window(r: _Reader, node: Node) -> ro.Window:
    try:
        return ro.parse_window(_text(r, node))
    except ro.RolloutError as exc:
        raise _Invalid(str(exc)) from None


def _rollout_soak(r: _Reader, node: Node) -> float:
    kind, text = _scalar(r, node, "a duration")
    if (kind, text) in (("int", "0"), ("str", "0s")):
        return 0.0
    return _duration(r, node)


def _rollout_section() -> _Section:
    return _Section(
        ro.Policy,
        {
            "waves": _Opt(_rollout_waves),
            "advance_at": _Opt(_rollout_percent),
            "soak": _Opt(_rollout_soak),
            "halt_at": _Opt(_rollout_halt_at),
            "halt_min": _Opt(_integer(1, 1_000_000)),
            "window": _Opt(_rollout_window, nullable=True),
        },
    )


def _check_rollout(r: _Reader, name: str, group: Group, devices: Mapping[str, Device]) -> None:
    """A canary must be a device of the group the policy belongs to."""
    if group.rollout is None:
        return
    members = [d for d, dev in devices.items() if dev.group == name]
    for spec in group.rollout.waves:
        for device in spec.devices:
            if device not in members:
                path = f"groups.{name}.rollout.waves"
                where = "in another group" if device in devices else "not a configured device"
                guess = _did_you_mean(device, members)
                hint = f" Did you mean '{guess}'?" if guess else f" Devices of {name}: {', '.join(members) or 'none'}."
                r.add(r.lines.get(path), path, f"canary {_clip(device)} is {where}.{hint}")


# --------------------------------------------------------------------------- schema tables


@dataclass(frozen=True)
class _Opt:
    convert: Convert | _Section | _Collection
    nullable: bool = False  # null means None; otherwise null keeps the default or is an error
    required: bool = False


@dataclass(frozen=True)
class _Section:
    """A mapping of options that builds one model object (keys map 1:1 onto its fields)."""

    build: Callable[..., Any]
    options: Mapping[str, _Opt]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The tables live at module level; read-only views keep them from being changed at run time.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def convert(self, r: _Reader, node: Node, path: str, **given: Any) -> Any:
        values, ok = _fields(r, node, path, self.options)
        if not ok:
            raise _Reported
        return self.build(**{**self.defaults, **given, **values})


@dataclass(frozen=True)
class _Collection:
    """A mapping from id to entry (images, groups, devices); ``id_field`` receives the key."""

    entry: _Section
    id_field: str


def _fields(r: _Reader, node: Node, path: str, options: Mapping[str, _Opt]) -> tuple[dict[str, Any], bool]:
    """Convert a mapping node option by option: (values that converted, whether all of them did)."""
    owner_line = r.lines.get(path, _line(node))
    if _is_null(node):
        pairs: list[tuple[Node, Node]] = []
    elif isinstance(node, MappingNode):
        pairs = node.value
    else:
        r.add(_line(node), path, f"expected a mapping of options, got {_describe_node(node)}")
        return {}, False
    values: dict[str, Any] = {}
    seen: set[str] = set()
    ok = True
    for key_node, value_node in pairs:
        key = _key(r, key_node, path)
        if key is None:
            ok = False
            continue
        if key in seen:  # a duplicate: already reported by _report_duplicates
            continue
        seen.add(key)
        option = options.get(key)
        if option is None:
            r.add(_line(key_node), path, _unknown_option(key_node, key, options))
            ok = False
            continue
        key_path = _join(path, key)
        r.lines[key_path] = _line(key_node)
        try:
            values[key] = _convert(r, option, value_node, key_path)
        except _Invalid as problem:
            r.add(_line(value_node), key_path, problem.message)
            r.failed.add(key_path)
            ok = False
        except _Reported:
            r.failed.add(key_path)
            ok = False
        except _KeepDefault:
            pass
    for key, option in options.items():
        if option.required and key not in seen:
            r.add(owner_line, path, f"missing required option '{key}'")
            ok = False
    return values, ok


def _convert(r: _Reader, option: _Opt, node: Node, path: str) -> Any:
    convert = option.convert
    if _is_null(node):
        if option.nullable:
            return None
        if isinstance(convert, _Section | _Collection):
            raise _KeepDefault
        raise _Invalid("needs a value (leave the key out to get the default)")
    if isinstance(convert, _Section):
        return convert.convert(r, node, path)
    if isinstance(convert, _Collection):
        return _collection(r, convert, node, path)
    return convert(r, node)


def _collection(r: _Reader, spec: _Collection, node: Node, path: str) -> Mapping[str, Any]:
    """Entries that converted; the others are reported. Every id written is kept in ``declared``
    so a broken group does not also make each of its devices "in an unknown group"."""
    if not isinstance(node, MappingNode):
        r.add(_line(node), path, f"expected a mapping of id: options, got {_describe_node(node)}")
        raise _Reported
    entries: dict[str, Any] = {}
    declared = r.declared.setdefault(path, [])
    seen = set(declared)  # beside the list: a membership test per entry must not scan 5,000 ids
    for key_node, value_node in node.value:
        key = _key(r, key_node, path)
        if key is None or key in seen:
            continue
        seen.add(key)
        declared.append(key)
        entry_path = _join(path, key)
        r.lines[entry_path] = _line(key_node)
        problem = _id_problem(key)
        if problem:
            r.add(_line(key_node), path, problem)
        try:
            entry = spec.entry.convert(r, value_node, entry_path, **{spec.id_field: key})
        except _Reported:
            continue
        if not problem:
            entries[key] = entry
    return MappingProxyType(entries)


def _key(r: _Reader, node: Node, path: str) -> str | None:
    if isinstance(node, ScalarNode):
        return str(node.value)
    r.add(_line(node), path, f"keys must be plain names, got {_describe_node(node)}")
    return None


def _unknown_option(node: Node, key: str, options: Mapping[str, _Opt]) -> str:
    if _kind(node.tag) == "merge":
        return "merge keys (<<) are not supported; write the options out"
    guess = _did_you_mean(key, options)
    if guess:
        return f"{_clip(key)} is not a valid option. Did you mean '{guess}'?"
    return f"{_clip(key)} is not a valid option. Valid options: {', '.join(options)}."


_PORT = _integer(1, 65535)
_SERVER = _Section(
    ServerConfig,
    {
        "host": _Opt(_host),
        "port": _Opt(_PORT),
        "public_url": _Opt(_public_url),
        "store": _Opt(_path),
        "state": _Opt(_path),
        "access_log": _Opt(_boolean),
        # Removed: a device now downloads only what it was announced (or runs); say so, not "unknown".
        "devices_fetch_any_image": _Opt(_removed(
            "was removed: a device downloads only the release announced to it or the one it runs "
            "(see docs/config.md); delete this line")),
        "signing_key": _Opt(_path),
        "trusted_proxies": _Opt(_networks),
        "admin": _Opt(
            _Section(
                Account,
                {"username": _Opt(_string()), "password": _Opt(_password, required=True)},
                defaults={"username": "admin"},
            )
        ),
        # A server cannot do TLS with half a key pair, so both are required once tls is given.
        "tls": _Opt(
            _Section(TLSFiles, {"cert": _Opt(_path, required=True), "key": _Opt(_path, required=True)}),
            nullable=True,
        ),
        "limits": _Opt(
            _Section(
                Limits,
                {
                    "max_connections": _Opt(_integer(1, 1_000_000)),
                    "idle_timeout": _Opt(_duration),
                    "max_upload_bytes": _Opt(_size(1024, 2**30)),
                    "max_header_bytes": _Opt(_size(1024, 2**24)),
                    "max_connections_per_address": _Opt(_integer(1, 1_000_000)),
                },
            )
        ),
    },
)
_MQTT = _Section(
    MqttConfig,
    {
        "url": _Opt(_mqtt_url),
        "username": _Opt(_string(), nullable=True),
        "password": _Opt(_secret, nullable=True),
        "client_id": _Opt(_string()),
        "keepalive": _Opt(_integer(0, 65535)),  # two bytes on the wire; 0 switches it off
        "protocol": _Opt(_protocol),
        "prefix": _Opt(_prefix),
        # Client side, everything is optional: mqtts:// alone uses the system's CA store.
        "tls": _Opt(_Section(TLSFiles, {"ca": _Opt(_path), "cert": _Opt(_path), "key": _Opt(_path)}), nullable=True),
        "embedded_host": _Opt(_host),
        "embedded_port": _Opt(_PORT),
        "version_commands": _Opt(_boolean),
        "embedded_homeassistant_password": _Opt(_password, nullable=True),
    },
)
_HOMEASSISTANT = _Section(
    HomeAssistantConfig,
    {"enabled": _Opt(_boolean), "discovery_prefix": _Opt(_topic), "status_topic": _Opt(_topic)},
)
_IMAGE = _Section(
    Image,
    {
        "platform": _Opt(_choice(PLATFORMS, "platform"), required=True),
        "description": _Opt(_string(empty_ok=True)),
    },
)
_GROUP = _Section(
    Group,
    {
        "image": _Opt(_ident, required=True),
        "auto_update": _Opt(_boolean),
        "version": _Opt(_semver, nullable=True),
        "attempt_timeout": _Opt(_duration),
        "confirm": _Opt(_choice(CONFIRM_MODES, "confirm mode")),
        "retries": _Opt(_integer(0, 100)),
        "retry_backoff": _Opt(_duration),
        "rollout": _Opt(_rollout_section(), nullable=True),
        "kind": _Opt(_choice(KINDS, "device kind")),
        "full_topic": _Opt(_full_topic),
        "minimal_image": _Opt(_ident),
    },
)
_DEVICE = _Section(
    Device,
    {
        "group": _Opt(_ident, nullable=True),
        "password": _Opt(_password, nullable=True),
        "name": _Opt(_string(empty_ok=True)),
        "kind": _Opt(_choice(KINDS, "device kind")),
        "topic": _Opt(_tasmota_topic),
        "full_topic": _Opt(_full_topic),
        "mac": _Opt(_mac),
    },
)
_TOP: Mapping[str, _Opt] = MappingProxyType(
    {
        "server": _Opt(_SERVER),
        "mqtt": _Opt(_MQTT),
        "homeassistant": _Opt(_HOMEASSISTANT),
        "images": _Opt(_Collection(_IMAGE, id_field="name")),
        "groups": _Opt(_Collection(_GROUP, id_field="name")),
        "devices": _Opt(_Collection(_DEVICE, id_field="id")),
    }
)


# --------------------------------------------------------------------------- stages


def _report_duplicates(r: _Reader, root: Node) -> None:
    """Refuse repeated keys at any depth; PyYAML would silently keep the last one."""
    stack: list[tuple[Node, str]] = [(root, "")]
    visited: set[int] = set()  # aliases share nodes; each is checked once
    found: list[tuple[int, str, str]] = []
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                key = str(key_node.value)
                if key in first_line:
                    lines = f"lines {first_line[key]} and {_line(key_node)}"
                    found.append((_line(key_node), path, f"{_clip(key)} is defined twice ({lines}); remove one"))
                else:
                    first_line[key] = _line(key_node)
                stack.append((value_node, _join(path, key)))
    for line, path, message in sorted(found, key=lambda problem: problem[0]):
        r.add(line, path, message)


def _unknown_ref(what: str, name: str, known: list[str]) -> str:
    message = f"unknown {what} {_clip(name)}"
    guess = _did_you_mean(name, known)
    if guess:
        return f"{message}. Did you mean '{guess}'?"
    if known:
        return f"{message}. Known {what}s: {', '.join(known)}."
    return f"{message}: no {what}s are defined (add it under {what}s:)"


_TASMOTA_DEVICE_KEYS = ("topic", "full_topic", "mac")
_TASMOTA_GROUP_KEYS = ("full_topic", "minimal_image")


def _resolve_kinds(r: _Reader, values: dict[str, Any]) -> None:
    """A device without ``kind`` takes its group's; a Tasmota device's FullTopic comes from it,
    its group or Tasmota's default. Done first, so every later check sees the kinds in force."""
    groups: Mapping[str, Group] = values.get("groups", {})
    devices: Mapping[str, Device] = values.get("devices", {})
    resolved = {}
    for device_id, device in devices.items():
        group = groups.get(device.group) if device.group else None
        if f"devices.{device_id}.kind" not in r.lines and group is not None and group.kind is not None:
            device = dataclasses.replace(device, kind=group.kind)
        if device.kind == "tasmota" and device.full_topic is None:
            full = group.full_topic if group is not None and group.full_topic else tasmota.DEFAULT_FULL_TOPIC
            device = dataclasses.replace(device, full_topic=full)
        resolved[device_id] = device
    if devices:
        values["devices"] = MappingProxyType(resolved)


def _check_kinds(r: _Reader, values: Mapping[str, Any]) -> None:
    """Kind-specific options only where that kind is in force; Tasmota's topics and OtaUrl fit."""
    groups: Mapping[str, Group] = values.get("groups", {})
    devices: Mapping[str, Device] = values.get("devices", {})
    images: Mapping[str, Image] = values.get("images", {})
    for name, group in groups.items():
        for key in _TASMOTA_GROUP_KEYS:
            path = f"groups.{name}.{key}"
            if getattr(group, key) is not None and group.kind != "tasmota":
                r.add(r.lines[path], path, f"'{key}' is a Tasmota setting; add kind: tasmota to the group")
        if group.minimal_image is not None:
            path = f"groups.{name}.minimal_image"
            minimal = images.get(group.minimal_image)
            if minimal is None:
                r.add(r.lines[path], path, _unknown_ref("image", group.minimal_image, list(images)))
            elif minimal.platform != "esp8266":
                r.add(r.lines[path], path, f"image {group.minimal_image!r} is for {minimal.platform}: only the "
                      "ESP8266 takes the two-step minimal upgrade (an ESP32 uses its safeboot partition)")
    server = values.get("server")
    public_url = server.public_url if server is not None else ServerConfig().public_url
    seen: dict[tuple[str, str], str] = {}
    for device_id, device in devices.items():
        if device.kind != "tasmota":
            for key in _TASMOTA_DEVICE_KEYS:
                path = f"devices.{device_id}.{key}"
                if path in r.lines and path not in r.failed:
                    r.add(r.lines[path], path, f"'{key}' is a Tasmota setting, and this device's kind is "
                          f"{device.kind}; add kind: tasmota, or remove the line")
            continue
        where = tasmota.Topics(device.tasmota_topic, device.full_topic or tasmota.DEFAULT_FULL_TOPIC)
        layout = (where.command(""), where.stat(""))
        if layout in seen:
            path = f"devices.{device_id}"
            r.add(r.lines[path], path, f"uses the same Tasmota topics ({where.command('')}…) as device "
                  f"{seen[layout]!r}; give one of them its own topic")
        seen.setdefault(layout, device_id)
        length = tasmota.url_length(public_url, device_id, tokens.TOKEN_CHARS)
        if length > tasmota.OTAURL_LIMIT:
            path = f"devices.{device_id}"
            r.add(r.lines[path], path, f"its download URL would be {length} characters, and Tasmota's OtaUrl "
                  f"keeps only {tasmota.OTAURL_LIMIT}: shorten server.public_url (e.g. an IP address instead "
                  f"of a host name) or the device id by {length - tasmota.OTAURL_LIMIT}")


def _cross_check(r: _Reader, values: dict[str, Any]) -> None:
    """Second stage: references between sections, and options that contradict each other."""
    image_ids = r.declared.get("images", [])
    group_ids = r.declared.get("groups", [])
    _resolve_kinds(r, values)
    _check_kinds(r, values)
    groups: Mapping[str, Group] = values.get("groups", {})
    devices: Mapping[str, Device] = values.get("devices", {})
    for name, group in groups.items():
        path = f"groups.{name}"
        if group.image not in image_ids:
            r.add(r.lines[f"{path}.image"], f"{path}.image", _unknown_ref("image", group.image, image_ids))
        if group.auto_update and group.version is not None:
            r.add(
                r.lines[f"{path}.version"],
                path,
                "a version pin and auto_update: true contradict each other; drop one of them",
            )
        _check_rollout(r, name, group, devices)
    for device_id, device in devices.items():
        if device.group is not None and device.group not in group_ids:
            path = f"devices.{device_id}.group"
            r.add(r.lines[path], path, _unknown_ref("group", device.group, group_ids))

    if "server" in devices:
        # <prefix>/server/availability is the server's own last will, not a device's.
        r.add(r.lines["devices.server"], "devices.server",
              "'server' is reserved (tinyota/server/availability is the server's own topic); rename it")
    server = values.get("server", None if "server" in r.failed else ServerConfig())
    if server is not None and server.admin.username in devices:
        # The HTTP layer checks admin and device accounts in one table keyed by username.
        r.add(
            r.lines[f"devices.{server.admin.username}"],
            f"devices.{server.admin.username}",
            f"the id {server.admin.username!r} is also server.admin.username; rename one of them",
        )
    mqtt: MqttConfig | None = values.get("mqtt")
    if mqtt is None:
        return
    if mqtt.password is not None and mqtt.username is None:
        # MQTT 3.1.1 (section 3.1.2.9) allows a password only together with a user name.
        r.add(r.lines["mqtt.password"], "mqtt", "password is set but username is not; add mqtt.username")
    if mqtt.tls is not None and not mqtt.url.startswith("mqtts://"):
        r.add(r.lines["mqtt.tls"], "mqtt.tls", "TLS files are given but mqtt.url is not mqtts://host[:port]")
    if mqtt.tls is not None and (mqtt.tls.cert is None) != (mqtt.tls.key is None):
        r.add(r.lines["mqtt.tls"], "mqtt.tls", "a client certificate needs both cert and key")
    if mqtt.embedded_homeassistant_password is not None and "homeassistant" in devices:
        # On the embedded broker, "homeassistant" is Home Assistant's login, not a device's.
        r.add(r.lines["devices.homeassistant"], "devices.homeassistant",
              "'homeassistant' is the embedded broker's Home Assistant login "
              "(mqtt.embedded_homeassistant_password); rename the device")


def _yaml_problem(r: _Reader, text: str, error: yaml.YAMLError) -> None:
    if isinstance(error, yaml.reader.ReaderError):
        line = text[: error.position].count("\n") + 1
        char = f"U+{error.character:04X}" if isinstance(error.character, int) else repr(error.character)
        r.add(line, "", f"invalid character {char} ({error.reason}); the file must be plain UTF-8 text")
        return
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        message = f"invalid YAML: {error.problem}"
        if error.context and error.context_mark is not None:
            message += f" ({error.context} on line {error.context_mark.line + 1})"
        if "'\\t'" in str(error.problem):
            message += "; indent with spaces, not tabs"
        lines = text.splitlines()
        row = error.problem_mark.line
        if "flow" in str(error.context) and row < len(lines) and "${" in lines[row]:
            # Inside { } a plain value cannot contain braces, so ${NAME} there needs quotes.
            message += '; inside { } write "${NAME}" in quotes'
        r.add(error.problem_mark.line + 1, "", message)
        return
    r.add(None, "", f"invalid YAML: {error}")


def _compose(loader_class: type[_LineLoader] | type[_FastLineLoader], text: str) -> Node | None:
    loader = loader_class(text)  # already checks the characters, so it can fail too
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _parse(raw: str | bytes, source_name: str, env: Mapping[str, str], base_dir: Path | None) -> Config:
    r = _Reader(source_name, env, base_dir)

    def refuse(line: int | None, message: str) -> ConfigError:
        r.add(line, "", message)
        return ConfigError(r.problems, source_name)

    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            before = raw[: error.start]
            column = error.start - before.rfind(b"\n")
            raise refuse(
                before.count(b"\n") + 1, f"not valid UTF-8 (column {column}); save the file as UTF-8"
            ) from None
    else:
        text = raw
    try:
        root = _compose(_Loader, text)
    except yaml.YAMLError:
        try:  # libyaml's words for a problem differ; the messages users are shown are PyYAML's
            root = _compose(_LineLoader, text)
        except yaml.YAMLError as error:
            _yaml_problem(r, text, error)
            raise ConfigError(r.problems, source_name) from None

    if root is None or _is_null(root):
        raise refuse(None, "config is empty; start from the sample config.yaml")
    if not isinstance(root, MappingNode):
        sections, got = ", ".join(_TOP), _describe_node(root)
        raise refuse(_line(root), f"the top level must be a mapping of sections ({sections}), got {got}")

    _report_duplicates(r, root)
    values, _ = _fields(r, root, "", _TOP)
    _cross_check(r, values)
    if r.problems:
        raise ConfigError(r.problems, source_name)

    server: ServerConfig = values.pop("server", ServerConfig())
    if base_dir is not None:
        # Defaults are relative too, and mean "next to the config file" like written paths do.
        server = dataclasses.replace(server, store=base_dir / server.store, state=base_dir / server.state)
    return Config(source=None, server=server, **values)


# --------------------------------------------------------------------------- public API


def parse_config(
    text: str | bytes,
    source_name: str = "<config>",
    *,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Validate config text. ``source_name`` labels messages; relative paths are resolved against
    ``base_dir`` (left relative when it is None); ``${NAME}`` reads ``env`` (default os.environ)."""
    base = None if base_dir is None else Path(base_dir).absolute()
    return _parse(text, source_name, os.environ if env is None else env, base)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; relative paths inside it are relative to its directory."""
    file = Path(path).absolute()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"[{file.name}] no such file: `tinyota init` writes a starter one, or copy the repository's "
             "sample config.yaml"], str(path)
        ) from None
    except OSError as error:
        raise ConfigError([f"[{file.name}] cannot read the file: {error.strerror}"], str(path)) from None
    try:
        config = _parse(raw, file.name, os.environ if env is None else env, file.parent)
    except ConfigError as error:
        raise ConfigError(error.problems, str(path)) from None
    return dataclasses.replace(config, source=file)


def redact(config: Config) -> dict[str, Any]:
    """A JSON-ready copy for logs with every password and secret replaced by "***"."""
    plain = _plain(config)
    assert isinstance(plain, dict)
    return plain


def _plain(value: object) -> object:
    # Masking by type, not by field name, so a secret added to the model later is covered too.
    if isinstance(value, Secret | Password):
        return "***"
    if isinstance(value, Path | IPv4Network | IPv6Network):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
