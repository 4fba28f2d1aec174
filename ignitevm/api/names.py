"""Uids and generated names. No pydantic here: the CLI may need these without the models."""

from __future__ import annotations

import os

from ignitevm.errors import ValidationError

UID_LENGTH = 16
_HEX = frozenset("0123456789abcdef")
# VM names: a DNS-1123 subdomain, and '_' as '-' (Ignite's own e2e tests name VMs
# "e2e_test_ignite_run"; Linux takes it in a hostname), at most 63 characters since the name is
# also the guest's hostname and travels in the kernel's colon-separated ip= argument
MAX_NAME = 63
_NAME_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
NAME_HINT = (
    "use lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or a "
    f"digit, at most {MAX_NAME} characters (e.g. my-vm-1)"
)

# Docker's names generator's words ("brave hopper"), which Ignite used for unnamed VMs, joined
# with '-' so a generated name follows the same rule as a given one.
_ADJECTIVES_WORDS = (
    "admiring adoring affectionate amazing awesome blissful bold brave busy charming clever "
    "compassionate competent confident cool dazzling determined dreamy eager ecstatic elastic "
    "elated elegant eloquent epic exciting fervent festive flamboyant focused friendly frosty "
    "funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry "
    "inspiring intelligent interesting jolly jovial keen kind laughing loving lucid magical "
    "modest musing nifty nostalgic objective optimistic peaceful pensive practical priceless "
    "quirky quizzical recursing relaxed reverent romantic serene sharp silly sleepy stoic "
    "sweet tender trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful "
    "xenodochial youthful zealous zen"
)
_ADJECTIVES = tuple(_ADJECTIVES_WORDS.split())
_SURNAMES_WORDS = (
    "agnesi albattani allen almeida archimedes aryabhata babbage banach bardeen bartik bassi "
    "bell bhabha blackwell bohr booth borg bose boyd brahmagupta brattain burnell carson "
    "chandrasekhar clarke cori cray curie darwin dijkstra easley einstein elion engelbart "
    "euclid euler fermat fermi feynman franklin galileo goldberg goldwasser goodall hamilton "
    "hawking heisenberg hertz hodgkin hopper hypatia jackson jennings johnson kalam keller "
    "khorana kilby knuth lamarr lamport leakey leavitt liskov lovelace lumiere margulis mayer "
    "mccarthy mcclintock meitner mirzakhani morse napier newton nightingale nobel noether "
    "noyce pascal pasteur payne perlman pike poincare ptolemy raman ramanujan ride ritchie "
    "rubin saha sammet shannon shaw sinoussi snyder stallman swanson swirles tesla thompson "
    "torvalds turing varahamihira villani wilbur wiles williams wilson wing wright yalow "
    "yonath"
)
_SURNAMES = tuple(_SURNAMES_WORDS.split())


def new_uid() -> str:
    """A random uid: 16 lower-case hex characters, as Ignite's."""
    return os.urandom(UID_LENGTH // 2).hex()


def uid_from_name(name: str) -> str:
    """A stable uid for a manifest that has none (Ignite required one): sha256 of the name."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:UID_LENGTH]


def is_uid(text: str) -> bool:
    # no regex: compiling one costs more start-up time than this check ever will
    return len(text) == UID_LENGTH and _HEX.issuperset(text)


def generate_name() -> str:
    """A two-word name such as "brave-hopper"; callers retry on a clash."""
    a, b = int.from_bytes(os.urandom(4)), int.from_bytes(os.urandom(4))
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}-{_SURNAMES[b % len(_SURNAMES)]}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a new VM, or None when it can (no regex: start-up cost)."""
    if not name:
        return "a name cannot be empty"
    if len(name) > MAX_NAME:
        return f"it has {len(name)} characters, more than {MAX_NAME}"
    for label in name.split("."):
        if not label:
            return "'.' must separate two parts"
        if not _NAME_ALNUM.issuperset(label.replace("-", "").replace("_", "")):
            bad = next(c for c in label if c not in "-_" and c not in _NAME_ALNUM)
            return f"{bad!r} is not allowed"
        if label[0] in "-_" or label[-1] in "-_":
            return "parts must start and end with a letter or a digit"
    return None


def safe_hostname(name: str) -> str:
    """``name`` as a hostname: itself when it follows the rule (every name given since the
    rule exists); a VM stored by an older version with another name gets a cleaned copy, so
    its ``ip=`` argument and /etc/hostname stay well-formed."""
    if name_problem(name) is None:
        return name
    cleaned = "".join(c if c in _NAME_ALNUM or c in "._" else "-" for c in name.lower())
    parts = [p.strip("-_") for p in cleaned.split(".")]
    return ".".join(p for p in parts if p)[:MAX_NAME].strip(".-_") or "vm"


# Ignite's idPrefix replaces "ignite" in the names of a VM's host objects ("<prefix>-<uid>": its
# network namespace, its CNI container id). A DNS label: those names end up in file names,
# iptables comments and CNI's container id, which allow no more (docs/api.md).
ID_PREFIX_MAX = 63
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def check_id_prefix(prefix: str) -> str:
    """``prefix`` if it is a DNS label (lower-case letters, digits and '-', not at either end,
    1 to 63 characters); else ValidationError."""
    ok = (
        0 < len(prefix) <= ID_PREFIX_MAX
        and _LABEL_CHARS.issuperset(prefix)
        and not prefix.startswith("-")
        and not prefix.endswith("-")
    )
    if not ok:
        raise ValidationError(
            f"invalid id prefix {prefix!r}",
            hint=f"use up to {ID_PREFIX_MAX} lower-case letters, digits and '-' (not first or "
            "last), e.g. ignite or my-lab",
        )
    return prefix
