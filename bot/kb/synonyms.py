"""Words people use for the same IT thing. A query word in a group also searches for the others.

Groups are deliberately narrow: each expansion adds weight to documents about the expansion, so a
loose group ("computer" = "device" = "phone") would pull wrong answers up. Article-specific words
belong in the article's own `synonyms:` front matter instead.
"""

from __future__ import annotations

from bot.kb.text import content_words

SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("password", "pwd", "passwd", "passcode", "pw", "passphrase"),
    ("mfa", "2fa", "multifactor", "authenticator", "twofactor", "verification code"),
    ("wifi", "wireless", "wlan", "hotspot"),
    ("vpn", "remote access", "globalprotect", "anyconnect"),
    ("email", "mail", "mailbox", "inbox"),
    ("laptop", "notebook", "computer", "pc"),
    ("monitor", "screen", "display"),
    ("printer", "print", "copier"),
    ("locked", "lockout", "locked out"),
    ("login", "logon", "signin", "sign in", "log in"),
    ("slow", "sluggish", "lag", "laggy", "freezing"),
    ("crash", "crashes", "crashing", "freezes", "hangs", "not responding"),
    ("install", "installation", "setup"),
    ("calendar", "meeting invite", "appointment"),
    ("teams", "msteams"),
    ("onedrive", "one drive"),
    ("sharepoint", "share point"),
    ("phishing", "phish", "scam email", "suspicious email"),
    ("headset", "headphones", "earphones"),
    ("microphone", "mic"),
    ("webcam", "camera"),
    ("license", "licence", "licensing"),
    ("admin rights", "administrator", "elevated"),
    ("delete", "remove", "erase"),
    ("storage", "disk space", "disk full", "quota"),
    ("new hire", "onboarding", "new starter", "new employee"),
    ("leaver", "offboarding", "leaving"),
    ("outage", "down", "not working for everyone"),
    ("ticket", "case", "request number"),
    ("voicemail", "voice mail"),
    ("mac", "macos", "macbook", "imac", "osx"),
    ("windows", "win10", "win11"),
    ("mobile", "smartphone", "cellphone", "iphone", "android"),
    # How people say the words help pages are written in ("Cannot create a new message from
    # Outlook Web App" is asked as "owa won't let me compose mail").
    ("email", "message", "messages", "mails"),
    ("create", "compose", "write", "make", "new"),
    ("credentials", "password", "login", "sign"),
    ("prompt", "prompted", "asks", "asking", "popup"),
    ("error", "problem", "issue", "fails", "failure", "broken"),
    ("troubleshoot", "fix", "resolve", "repair", "solve"),
    ("blank", "empty"),
    ("open", "start", "launch", "run", "load"),
    ("attachment", "attachments", "attached"),
    ("delivered", "arrive", "received", "receive", "bounce"),
    ("ndr", "bounce", "bounced", "undeliverable", "non delivery"),
    ("reset", "revert", "reverts", "reverting", "lost"),
    ("settings", "preferences", "options", "configuration", "config"),
    ("audio", "voice", "sound"),
    ("emoji", "emojis", "emoticon", "emoticons", "smiley", "smileys"),
    ("cache", "cached", "temp files"),
    ("clear", "wipe", "purge", "flush"),
    ("connect", "connection", "connectivity", "reach", "offline"),
    ("folder", "directory", "path"),
    ("book", "booking", "reserve", "reservation", "double booked"),
    ("owner", "ownership", "owns", "transfer"),
    ("distribution group", "distribution list", "dl", "mailing list"),
    ("microsoft 365", "office 365", "o365", "m365"),
    ("owa", "outlook web app", "outlook on the web", "outlook web access", "web outlook"),
    ("out of office", "automatic replies", "auto reply", "autoreply", "ooo", "vacation reply"),
    ("premises", "prem", "onprem"),
    ("memory", "ram"),
    ("freezes", "freeze", "locks up", "frozen", "unresponsive"),
    ("spreadsheet", "workbook", "excel"),
    ("document", "doc", "docs"),
    ("slow", "slower", "slowly", "forever", "takes ages"),
    ("colleague", "coworker", "coworkers", "other people", "others"),
    ("free busy", "availability", "busy"),
    ("missing", "gone", "disappeared", "vanished", "lost"),
    ("duplicate", "duplicated", "twice", "double"),
    ("presence", "status", "availability"),
    ("admin center", "admin portal", "eac"),
    ("migrate", "migration", "move", "moved", "moving"),
    ("shared", "sharing", "share"),
    ("upload", "uploading", "attach"),
    ("download", "downloading", "save"),
    ("sso", "single sign on", "single signon"),
    ("bigger", "larger", "size", "grows", "increases"),
)


def build_synonym_map(groups: tuple[tuple[str, ...], ...] = SYNONYM_GROUPS) -> dict[str, tuple[str, ...]]:
    """Surface word (or joined phrase) -> the surface words of every other member of its group."""
    mapping: dict[str, list[str]] = {}
    for group in groups:
        members = [tuple(content_words(member)) for member in group]
        for member in members:
            if not member:
                continue
            key = " ".join(member)
            expansion = [w for other in members if other != member for w in other]
            mapping.setdefault(key, []).extend(w for w in expansion if w not in member)
    return {key: tuple(dict.fromkeys(words)) for key, words in mapping.items()}
