"""Self-service through Microsoft Graph: the `Directory` port, its Graph and demo backends, the
person resolver, and the guarded self-service actions. No chat SDK is imported here."""

from bot.graph.factory import build_action_runner, build_directory, build_resolver

__all__ = ["build_action_runner", "build_directory", "build_resolver"]
