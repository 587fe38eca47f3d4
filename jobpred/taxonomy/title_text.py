"""The text rules of title normalisation: canonical forms, abbreviations, qualifiers, context and head nouns.

    canonical("Sr. Software Eng.")            # 'senior software engineer'
    head_nouns("Executive Assistant to CEO")  # ['assistant']

Used by :class:`jobpred.taxonomy.normalize.TitleNormalizer` to build its index and to read queries, and by
``tools/build_taxonomy.py``.
"""

from __future__ import annotations

import re
import unicodedata

# Abbreviations expanded token by token (after case folding and punctuation removal).
ABBREVIATIONS: dict[str, str] = {
    "sr": "senior", "snr": "senior", "jr": "junior", "jnr": "junior",
    "mgr": "manager", "mngr": "manager", "mgmt": "management", "asst": "assistant", "assoc": "associate",
    "admin": "administrative", "adm": "administrative", "exec": "executive", "dir": "director",
    "vp": "vice president", "svp": "vice president", "evp": "vice president", "avp": "vice president",
    "ceo": "chief executive officer", "cfo": "chief financial officer", "cto": "chief technology officer",
    "coo": "chief operating officer", "cio": "chief information officer",
    "eng": "engineer", "engr": "engineer", "dev": "developer", "swe": "software engineer",
    "sde": "software engineer", "sw": "software", "sys": "systems", "sysadmin": "systems administrator",
    "devops": "devops engineer", "qa": "quality assurance", "qc": "quality control",
    "tech": "technician", "techn": "technician", "coord": "coordinator", "supv": "supervisor",
    "supvr": "supervisor", "spvr": "supervisor", "spec": "specialist", "rep": "representative",
    "reps": "representative", "cust": "customer", "svc": "service", "svcs": "services", "ops": "operations",
    "acct": "accountant", "acctg": "accounting", "hr": "human resources", "it": "information technology",
    "rn": "registered nurse", "lpn": "licensed practical nurse", "lvn": "licensed vocational nurse",
    "cna": "certified nursing assistant", "np": "nurse practitioner", "pa": "physician assistant",
    "emt": "emergency medical technician", "md": "physician", "dds": "dentist", "pharmd": "pharmacist",
    "cpa": "certified public accountant", "gm": "general manager", "pm": "project manager",
    "dba": "database administrator", "ux": "user experience", "ui": "user interface",
    "hvac": "heating air conditioning", "cdl": "commercial", "ft": "", "pt": "", "w": "with",
    "&": "and", "dept": "department", "mfg": "manufacturing", "maint": "maintenance", "prod": "production",
    "elec": "electrical", "mech": "mechanical", "gen": "general", "intl": "international",
    "natl": "national", "mktg": "marketing", "equip": "equipment", "const": "construction",
    "env": "environmental", "envr": "environmental", "sped": "special education", "hs": "high school",
    "ap": "accounts payable", "ar": "accounts receivable", "tsa": "transportation security", "sls": "sales", "ofc": "office", "recpt": "receptionist",
}

# Words that qualify a title without changing the occupation; stripped only where what remains is a key.
QUALIFIERS = frozenset(
    ["senior", "junior", "lead", "principal", "staff", "trainee", "intern", "internship", "entry", "level", "mid", "i", "ii", "iii", "iv", "v", "vi", "1", "2", "3", "4", "5", "6", "temp", "temporary", "contract", "contractor", "freelance", "part", "full", "time", "remote", "experienced", "experience", "night", "day", "shift", "weekend", "1st", "2nd", "3rd", "master",
     "associate", "tier", "certified", "licensed", "registered", "qualified", "skilled", "acting", "interim",
     "regional", "global", "seasonal", "per", "diem", "prn", "apprentice", "journeyman", "graduate"]
)
# Platform names of the gig economy -> the O*NET wording of the work ("Uber Driver" -> "rideshare driver").
BRANDS: dict[str, str] = {
    "uber": "rideshare", "lyft": "rideshare", "ola": "rideshare", "bolt": "rideshare",
    "doordash": "delivery", "grubhub": "delivery", "ubereats": "delivery", "postmates": "delivery",
    "deliveroo": "delivery", "instacart": "personal shopper", "shipt": "personal shopper",
    "taskrabbit": "handyman",
}
_SEPARATORS = re.compile(r"\s(?:-|–|—|\||@|at|for|with|to)\s|\s-|-\s|[,;:]")
_PARENS = re.compile(r"\(([^()]*)\)?|\[([^\[\]]*)\]?|\{([^{}]*)\}?")
_NON_WORD = re.compile(r"[^\w&]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_HEAD_CUT = re.compile(r"\s(?:of|for|to|in|at|with|on|from)\s|--|,")
_CONJUNCTION = re.compile(r"\s(?:and|or)\s|&|/")
_LEAD_OF = re.compile(r"^\s*(?:head|director|vp|vice president|chief)\s+of\s+(.+)$")
_STOPWORDS = frozenset({"of", "the", "a", "an", "in", "for", "to", "on"})


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s"):
        return word[:-1]
    return word


def _canonical_words(text: str) -> list[str]:
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).casefold()).replace("&", " and ")
    words: list[str] = []
    for token in _NON_WORD.sub(" ", text).split():
        expanded = ABBREVIATIONS.get(token)
        if expanded is None:
            if token not in _STOPWORDS:
                words.append(_singular(token))
        else:
            words.extend(_singular(w) for w in expanded.split() if w not in _STOPWORDS)
    return words


def canonical(text: str) -> str:
    """Case-folded, punctuation-free, abbreviation-expanded, singular form of a title."""
    return " ".join(_canonical_words(text))


def _overlap(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return 0.5 * (fuzz.token_set_ratio(a, b) + fuzz.token_sort_ratio(a, b))


def _strip_qualifiers(key: str) -> str:
    return " ".join(w for w in key.split() if w not in QUALIFIERS)


def _context_free(raw: str) -> tuple[str, list[str]]:
    """(the title without its bracketed parts, the bracketed parts): "Driver (CDL-A)" -> ("Driver ", ["CDL-A"])."""
    inner = [next(g for g in m.groups() if g is not None) for m in _PARENS.finditer(raw)]
    return _PARENS.sub(" ", raw), [s for s in inner if s.strip()]


def _head(raw: str) -> str:
    """The part of a raw title before context such as ' - ICU', ' at Walmart', ' to the CEO', ', Remote'."""
    return _SEPARATORS.split(raw, maxsplit=1)[0]


def head_nouns(raw: str) -> list[str]:
    """The head noun of each conjunct of a title, canonical: "Executive Assistant to CEO" -> ["assistant"],
    "Buyers and Purchasing Agents, Farm Products" -> ["buyer", "agent"], "Helpers--Electricians" -> ["helper"]."""
    text = _POSSESSIVE.sub("", _context_free(unicodedata.normalize("NFKC", raw).casefold())[0])
    text = _HEAD_CUT.split(f" {text} ", maxsplit=1)[0]
    heads = []
    for part in _CONJUNCTION.split(text):
        words = [w for w in canonical(part).split() if w not in QUALIFIERS]
        if words:
            heads.append(words[-1])
    return heads


_EXCEPT = re.compile(r",?\s+except\b.*$|,?\s+all other\b.*$", re.IGNORECASE)


def official_words(title: str) -> list[str]:
    """The words of an official O*NET title that say what the occupation is, canonical: without its
    "Except ..." and "All Other" parts (they name what it is *not*) or conjunctions.
    "Electronics Engineers, Except Computer" -> ["electronic", "engineer"]."""
    return [w for w in canonical(_EXCEPT.sub("", title)).split() if w not in ("and", "or", "other")]


def stem_match(a: str, b: str) -> bool:
    """Two canonical words of one stem: equal, or sharing a prefix of at least 4 letters and 60% of the
    shorter word ("manager" / "management", "nurse" / "nursing", "prep" / "preparation"; not
    "computer" / "compliance")."""
    if a == b:
        return True
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k >= 4 and k >= 0.6 * n


def canonical_keep_of(text: str) -> str:
    """Like :func:`canonical` but keeping "of" (for "head of X" / "director of X")."""
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).casefold()).replace("&", " and ")
    return " ".join(ABBREVIATIONS.get(t, t) for t in _NON_WORD.sub(" ", text).split())
