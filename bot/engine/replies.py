"""Reading what a person typed: normalising it, the commands that work anywhere (cancel, start over,
a person), yes/no/solved words, and matching a reply to one of a question's choices."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rapidfuzz import fuzz

from bot.engine.spec import Choice
from bot.engine.state import V_CHOICE, UserTurn

_CANCEL = {"cancel", "stop", "quit", "exit", "nevermind", "never mind", "forget it", "abort"}
_RESTART = {"start over", "restart", "start again", "begin again", "reset conversation"}
_HUMAN = {
    "talk to a person", "talk to a human", "speak to a person", "speak to a human", "human",
    "agent", "real person", "a person", "technician", "talk to someone", "speak to someone",
    "talk to an agent", "live agent", "person please", "human please", "operator",
}
YES = {"yes", "y", "yep", "yeah", "sure", "ok", "okay", "please", "go ahead", "do it", "yes please"}
NO = {"no", "n", "nope", "nah", "no thanks", "don't", "dont"}
SOLVED = {"solved", "this solved it", "that solved it", "fixed", "it worked", "worked", "thanks that worked",
           "that fixed it", "yes that worked"}
UNSOLVED = {"still need help", "not solved", "didn't work", "didnt work", "did not work", "no luck",
             "still broken", "still not working", "nope still broken"}



def normalise(text: str | None) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'@.-]", " ", (text or "").lower())).strip(" .!?")


def global_command(text: str | None) -> str | None:
    """"cancel", "start over" or "talk to a person", wherever the person is in a flow."""
    said = normalise(text)
    if not said:
        return None
    if said in _CANCEL:
        return "cancel"
    if said in _RESTART:
        return "restart"
    if said in _HUMAN or re.fullmatch(r"(i want to |can i |let me |please )?(talk|speak|chat) (to|with) "
                                      r"(a |an |some )?(person|human|someone|agent|technician|"
                                      r"somebody|real person)( please)?", said):
        return "human"
    return None


def pick_choice(choices: Sequence[Choice], turn: UserTurn) -> Choice | None:
    if turn.value and turn.value.startswith(V_CHOICE):
        wanted = turn.value[len(V_CHOICE):]
        return next((c for c in choices if c.value == wanted), None)
    said = normalise(turn.text)
    if not said:
        return None
    if said.isdigit() and 1 <= int(said) <= len(choices):
        return choices[int(said) - 1]
    for choice in choices:
        if said in (normalise(choice.label), normalise(choice.value)):
            return choice
    starts = [c for c in choices if normalise(c.label).startswith(said) or said.startswith(normalise(c.label))]
    if len(starts) == 1:
        return starts[0]
    # A misspelt or loosely typed label ("offce wifi", "keeps droping"): the closest label if it is
    # close and clearly closer than the next.
    scored = sorted(((fuzz.WRatio(said, normalise(c.label)), i) for i, c in enumerate(choices)), reverse=True)
    if scored and scored[0][0] >= _CHOICE_MATCH and (len(scored) == 1 or scored[0][0] - scored[1][0] >= 10):
        return choices[scored[0][1]]
    return None


# How close (rapidfuzz WRatio, 0..100) typed text must be to a choice's label to count as that choice.
_CHOICE_MATCH = 86
# A reply of at least this many words that matches no choice is read as a possible new request.
NEW_REQUEST_WORDS = 3
