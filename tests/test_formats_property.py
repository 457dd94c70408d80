"""Property tests shared by every format: no crash but ConfigError, exact in-place edits."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig import Format, dropin, envfile, jsonconf, yamlconf
from nodelocaldns_agent.kubeletconfig.unitfile import expand_words, split_words

FORMATS: list[Format] = [envfile.FORMAT, yamlconf.FORMAT, jsonconf.FORMAT, dropin.FORMAT]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addresses = st.ip_addresses().map(str)
address_lists = st.lists(addresses, min_size=1, max_size=4).map(tuple)
#: bytes that look a bit like the formats, so that the parsers get past the first byte
format_bytes = st.lists(
    st.sampled_from(
        [
            b"clusterDNS",
            b"--cluster-dns",
            b"=",
            b":",
            b" ",
            b"\t",
            b"\n",
            b"\r\n",
            b"\r",
            b"-",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b'"',
            b"'",
            b"\\",
            b"#",
            b";",
            b"&a",
            b"*a",
            b"!!str",
            b"10.96.0.10",
            b"fd00::a",
            b"A",
            b"export ",
            b"\xef\xbb\xbf",
            b"\xff",
            b"\0",
            b"$",
            b"? ",
            b"<<",
            b"null",
            b"|",
            b">",
        ]
    )
    | st.binary(max_size=4),
    max_size=40,
).map(b"".join)


def _read_or_config_error(fmt: Format, data: bytes) -> tuple[str, ...] | None:
    try:
        return fmt.read(data, "/f")
    except ConfigError as exc:
        assert "/f" in str(exc)
        return None


@PROPERTY
@given(data=st.binary(max_size=300) | format_bytes, new=address_lists)
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_any_bytes_give_a_result_or_config_error(fmt: Format, data: bytes, new: tuple[str, ...]):
    _read_or_config_error(fmt, data)
    try:
        out = fmt.edit(data, new, "/f")
    except ConfigError as exc:
        assert "/f" in str(exc)
    else:
        assert fmt.read(out, "/f") == new


@PROPERTY
@given(data=st.binary(max_size=300) | format_bytes)
def test_parse_env_never_raises(data: bytes):
    for assignment in envfile.parse_env(data, "/f"):
        start, end = assignment.span
        assert 0 <= start <= end <= len(data)
        for value_off, file_off, length in assignment.runs:
            chunk = assignment.raw_value[value_off : value_off + length]
            assert data[file_off : file_off + length] == chunk


@PROPERTY
@given(text=st.text(max_size=200), env=st.dictionaries(st.sampled_from("ABC"), st.text()))
def test_unit_word_splitting_raises_only_value_error(text: str, env: dict[str, str]):
    try:
        words = split_words(text, cunescape=True)
    except ValueError:
        return
    expand_words(words, env)


# --- env files -------------------------------------------------------------------------

env_junk_lines = st.sampled_from(
    [
        b"# comment --cluster-dns=1.1.1.1",
        b"; other comment",
        b"",
        b"   ",
        b"MAX_PODS=61",
        b'NODE_LABELS="a=b,c=d"',
        b"export V='--v=2'",
        b"LATIN=caf\xe9 \xff",
        b"not an assignment",
        b"1BAD=--cluster-dns=9.9.9.9",
        b'ESC="a\\"b\\\\c"',
        b"TRAIL=x   ",
    ]
)


@st.composite
def env_files(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    values = draw(address_lists)
    joined = ",".join(values).encode()
    flag = draw(st.sampled_from([b"--cluster-dns=" + joined, b"--cluster-dns " + joined]))
    before = draw(st.sampled_from([b"", b"--node-ip=1.2.3.4 "]))
    after = draw(st.sampled_from([b"", b" --max-pods=61"]))
    quote = draw(st.sampled_from([b'"', b"'", b""]))
    prefix = draw(st.sampled_from([b"", b"export ", b"  "]))
    line = prefix + b"KUBELET_ARGS=" + quote + before + flag + after + quote
    lines = draw(st.lists(env_junk_lines, max_size=5))
    lines.insert(draw(st.integers(0, len(lines))), line)
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = newline.join(lines) + draw(st.sampled_from([b"", newline]))
    return data, values


@PROPERTY
@given(sample=env_files(), new=address_lists)
def test_env_edit_changes_only_the_value(
    sample: tuple[bytes, tuple[str, ...]], new: tuple[str, ...]
):
    data, values = sample
    assert envfile.FORMAT.read(data, "/f") == values
    occurrence = envfile.find_cluster_dns(data, "/f")
    assert occurrence is not None and occurrence.span is not None
    start, end = occurrence.span
    out = envfile.FORMAT.edit(data, new, "/f")
    assert out == data[:start] + ",".join(new).encode() + data[end:]
    assert envfile.FORMAT.read(out, "/f") == new
    assert envfile.FORMAT.edit(out, values, "/f") == data


# --- YAML ------------------------------------------------------------------------------


@st.composite
def yaml_files(draw: st.DrawFn, uniform: bool = False) -> tuple[bytes, tuple[str, ...]]:
    values = draw(address_lists)
    quote = draw(st.sampled_from(["", "'", '"']))
    if not quote:
        assume(all(yamlconf.render_item(v) == v for v in values))
        assume(all(yamlconf.render_item(v, flow=True) == v for v in values))
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    comment = "" if uniform else draw(st.sampled_from(["", "  # dns"]))
    if draw(st.booleans()):
        indent = draw(st.sampled_from(["", "  ", "    "]))
        body = "".join(f"{nl}{indent}- {quote}{v}{quote}{comment}" for v in values)
    else:
        sep = ", " if uniform else draw(st.sampled_from([", ", ",", " , "]))
        body = " [" + sep.join(f"{quote}{v}{quote}" for v in values) + "]" + comment
    lines = [
        "apiVersion: kubelet.config.k8s.io/v1beta1",
        "# a comment: clusterDNS: [9.9.9.9]",
        f"clusterDNS:{body}",
        "clusterDomain: cluster.local",
        "nested:",
        "  clusterDNS: [8.8.8.8]",
    ]
    start = draw(st.integers(0, 2))
    text = nl.join(lines[start:]) + draw(st.sampled_from(["", nl]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + text).encode(), values


def _plain_safe(values: tuple[str, ...]) -> bool:
    return all(
        yamlconf.render_item(v) == v and yamlconf.render_item(v, flow=True) == v for v in values
    )


@PROPERTY
@given(sample=yaml_files(), new=address_lists)
def test_yaml_same_count_edit_changes_only_the_items(
    sample: tuple[bytes, tuple[str, ...]], new: tuple[str, ...]
):
    data, values = sample
    assert yamlconf.FORMAT.read(data, "/f") == values
    new = (new * len(values))[: len(values)]
    site = yamlconf.find_cluster_dns(data, "/f")
    assert site is not None
    quoted = site.items[0].quote != ""
    assume(quoted or _plain_safe(new))
    text = data.decode()
    expected, done = [], 0
    for item, value in zip(site.items, new, strict=True):
        assert item.value is not None
        expected += [text[done : item.value[0]], value]
        done = item.value[1]
    expected.append(text[done:])
    out = yamlconf.FORMAT.edit(data, new, "/f")
    assert out == "".join(expected).encode()
    assert yamlconf.FORMAT.edit(out, values, "/f") == data


@PROPERTY
@given(sample=yaml_files(uniform=True), new=address_lists)
def test_yaml_count_changes_round_trip(sample: tuple[bytes, tuple[str, ...]], new: tuple[str, ...]):
    data, values = sample
    site = yamlconf.find_cluster_dns(data, "/f")
    assert site is not None
    assume(site.items[0].quote != "" or _plain_safe(new))
    out = yamlconf.FORMAT.edit(data, new, "/f")
    assert yamlconf.FORMAT.read(out, "/f") == new
    assert yamlconf.FORMAT.edit(out, values, "/f") == data


# --- JSON ------------------------------------------------------------------------------


@st.composite
def json_files(draw: st.DrawFn, uniform: bool = False) -> tuple[bytes, tuple[str, ...]]:
    values = draw(address_lists)
    doc = {"kind": "KubeletConfiguration", "clusterDNS": list(values), "maxPods": 17}
    keys = draw(st.permutations(list(doc)))
    indent = draw(st.sampled_from([None, 2, 4]))
    if uniform:  # the separators the editor would choose itself
        separators = (",", ": ") if indent else (", ", ": ")
    else:
        separators = draw(st.sampled_from([(", ", ": "), (",", ":")]))
    text = json.dumps({k: doc[k] for k in keys}, indent=indent, separators=separators)
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    text = text.replace("\n", nl) + draw(st.sampled_from(["", nl]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + text).encode(), values


@PROPERTY
@given(sample=json_files(), new=address_lists)
def test_json_same_count_edit_changes_only_the_strings(
    sample: tuple[bytes, tuple[str, ...]], new: tuple[str, ...]
):
    data, values = sample
    assert jsonconf.FORMAT.read(data, "/f") == values
    new = (new * len(values))[: len(values)]
    out = jsonconf.FORMAT.edit(data, new, "/f")
    expected = data
    for old, value in zip(values, new, strict=True):
        expected = expected.replace(f'"{old}"'.encode(), f'"\0{value}"'.encode(), 1)
    assert out == expected.replace(b"\0", b"")
    assert jsonconf.FORMAT.edit(out, values, "/f") == data


@PROPERTY
@given(sample=json_files(uniform=True), new=address_lists)
def test_json_count_changes_round_trip(sample: tuple[bytes, tuple[str, ...]], new: tuple[str, ...]):
    data, values = sample
    out = jsonconf.FORMAT.edit(data, new, "/f")
    assert jsonconf.FORMAT.read(out, "/f") == new
    assert json.loads(out.decode().lstrip("\ufeff"))["clusterDNS"] == list(new)
    assert jsonconf.FORMAT.edit(out, values, "/f") == data


@PROPERTY
@given(
    sample=st.one_of(yaml_files(), json_files()),
    at=st.integers(0, 10_000),
    junk=st.binary(min_size=1, max_size=3),
    new=address_lists,
)
def test_mutated_config_files_give_a_result_or_config_error(
    sample: tuple[bytes, tuple[str, ...]], at: int, junk: bytes, new: tuple[str, ...]
):
    data, _ = sample
    at %= len(data) + 1
    mutated = data[:at] + junk + data[at:]
    for fmt in (yamlconf.FORMAT, jsonconf.FORMAT, dropin.FORMAT):
        _read_or_config_error(fmt, mutated)
        try:
            out = fmt.edit(mutated, new, "/f")
        except ConfigError:
            continue
        assert fmt.read(out, "/f") == new
