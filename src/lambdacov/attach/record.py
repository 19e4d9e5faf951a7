"""What `lambdacov attach` changed on a function, kept in the function's own tags.

Detach undoes exactly what this record says and nothing else, so a variable
or layer another tool or a person set is never touched. The record lives in
tags rather than in an environment variable because tags do not count towards
Lambda's 4 KB environment limit, are invisible to the function's code, and
survive a code deployment that replaces the configuration's variables.

Format: the record as compact JSON, compressed with zlib, encoded in base64
(whose alphabet, ``A-Z a-z 0-9 + / =``, is all allowed in tag values), and
split into chunks of at most 256 characters under the keys
``lambdacov:record:0``, ``lambdacov:record:1``... A typical record fits in
one or two tags. The JSON document::

    {"v": 1,
     "layer": {"added": ARN or null, "replaced": ARN or null},
     "env": {"NAME": [value before attach or null, value attach set], ...},
     "policy": [role name, inline policy name] or null}

A container image function's record is version 2: the same document with
``"image": {"before": IMAGECONFIG or null, "after": IMAGECONFIG}``, the
function's ImageConfig (``EntryPoint``, ``Command``, ``WorkingDirectory``,
those set) before attach and as attach set it; null before: none was set.
Only those records carry the new version, so a lambdacov that predates them
refuses to detach an image function rather than leave its command redirected,
and still reads every other record.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

TAG_PREFIX = "lambdacov:record:"
#: Lambda's limits on tags: characters per value, and tags per function.
MAX_TAG_VALUE = 256
MAX_TAGS = 50
FORMAT_VERSION = 1
#: The version of a record that carries an image part (a container image function).
IMAGE_FORMAT_VERSION = 2


class RecordError(ValueError):
    """The record tags exist but cannot be read (edited by hand, or truncated)."""


@dataclass(frozen=True)
class EnvChange:
    """One variable attach set: its value before (None: absent) and the value attach wrote."""

    name: str
    before: str | None
    after: str


@dataclass(frozen=True)
class ImageChange:
    """A container image function's ImageConfig before attach (None: none) and as attach set it.

    Each is the ImageConfig's set fields only (``EntryPoint``, ``Command``,
    ``WorkingDirectory``), as Lambda takes them in UpdateFunctionConfiguration.
    """

    before: Mapping[str, object] | None
    after: Mapping[str, object]


@dataclass(frozen=True)
class AttachRecord:
    """Everything attach changed on one function, enough for detach to undo exactly that."""

    layer_added: str | None = None
    layer_replaced: str | None = None
    env: tuple[EnvChange, ...] = ()
    policy: tuple[str, str] | None = None  # (role name, inline policy name) put by --grant
    image: ImageChange | None = None  # a container image function's redirected ImageConfig

    def to_dict(self) -> dict[str, object]:
        """The JSON document stored in the tags."""
        document: dict[str, object] = {
            "v": FORMAT_VERSION,
            "layer": {"added": self.layer_added, "replaced": self.layer_replaced},
            "env": {change.name: [change.before, change.after] for change in self.env},
            "policy": list(self.policy) if self.policy else None,
        }
        if self.image is not None:
            document["v"] = IMAGE_FORMAT_VERSION
            before = dict(self.image.before) if self.image.before is not None else None
            document["image"] = {"before": before, "after": dict(self.image.after)}
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, object]) -> AttachRecord:
        """Read the JSON document back; raise RecordError when it is not a record."""
        try:
            version = document.get("v")
            if version not in (FORMAT_VERSION, IMAGE_FORMAT_VERSION):
                raise RecordError(f"unknown record version {version!r}")
            image = None
            if version == IMAGE_FORMAT_VERSION:
                image = _image_change(document.get("image"))
            layer = document["layer"]
            env = document["env"]
            policy = document.get("policy")
            assert isinstance(layer, dict) and isinstance(env, dict)
            changes = tuple(
                EnvChange(str(name), _optional_str(values[0]), str(values[1]))
                for name, values in sorted(env.items())
            )
            role_policy = None
            if policy is not None:
                assert isinstance(policy, list) and len(policy) == 2
                role_policy = (str(policy[0]), str(policy[1]))
            return cls(
                _optional_str(layer.get("added")),
                _optional_str(layer.get("replaced")),
                changes,
                role_policy,
                image,
            )
        except (KeyError, IndexError, TypeError, AssertionError) as error:
            raise RecordError(f"malformed record: {error!r}") from None


def _image_change(part: object) -> ImageChange:
    assert isinstance(part, dict), "the image part is missing"
    before, after = part.get("before"), part["after"]
    assert before is None or isinstance(before, dict)
    assert isinstance(after, dict)
    return ImageChange(before, after)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def encode_tags(record: AttachRecord) -> dict[str, str]:
    """The record as tags (key -> value), each value at most 256 characters."""
    text = json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True)
    payload = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    chunks = [payload[i : i + MAX_TAG_VALUE] for i in range(0, len(payload), MAX_TAG_VALUE)]
    return {f"{TAG_PREFIX}{index}": chunk for index, chunk in enumerate(chunks)}


def record_tag_keys(tags: Mapping[str, str]) -> tuple[str, ...]:
    """The keys of the record's tags among a function's tags."""
    return tuple(sorted(key for key in tags if key.startswith(TAG_PREFIX)))


def decode_tags(tags: Mapping[str, str]) -> AttachRecord | None:
    """The record kept in a function's tags, None when there is none.

    Raises RecordError when the tags exist but do not decode: a partial or
    edited record must stop detach rather than undo the wrong thing.
    """
    keys = record_tag_keys(tags)
    if not keys:
        return None
    try:
        indexes = sorted(int(key[len(TAG_PREFIX) :]) for key in keys)
    except ValueError:
        raise RecordError("a lambdacov:record tag has a bad index") from None
    if indexes != list(range(len(indexes))):
        raise RecordError("lambdacov:record tags are missing a part")
    payload = "".join(tags[f"{TAG_PREFIX}{index}"] for index in indexes)
    try:
        text = zlib.decompress(base64.b64decode(payload, validate=True)).decode("utf-8")
        document = json.loads(text)
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"the record does not decode: {error}") from None
    if not isinstance(document, dict):
        raise RecordError("the record is not a JSON object")
    return AttachRecord.from_dict(document)
