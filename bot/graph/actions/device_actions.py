"""device_actions: list the person's own Intune devices, sync one, or restart one (after asking,
naming the device)."""

from __future__ import annotations

from bot.core.models import Button
from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run


def os_family(operating_system: str) -> str:
    """`windows`, `mac`, `mobile` or `other` for an Intune device's operatingSystem
    ("Windows", "macOS", "iOS", "iPadOS", "Android", "AndroidForWork"...)."""
    name = operating_system.casefold()
    if "windows" in name:
        return "windows"
    if "mac" in name or "os x" in name:
        return "mac"
    if name.startswith(("ios", "ipados", "android")):
        return "mobile"
    return "other"


async def run(run: Run) -> ActionOutcome:
    devices = list(await run.directory.managed_devices(run.user.id))
    if not devices:
        return ActionOutcome(
            ok=False,
            code="no_devices",
            message="I can't find any company-managed device registered to you. "
            "A technician can check your device's enrolment.",
        )
    # The flow says which kind of device the person means ("Windows laptop", "my phone"): offer
    # only those, and pick the one if there is exactly one. If none matches (they said Windows
    # but own a Mac), offer every device rather than none.
    wanted = run.arg("device")
    kind = run.arg("os").lower()
    if kind and not wanted and run.arg("command").lower() != "list":
        matching = [d for d in devices if os_family(d.operating_system) == kind]
        if matching:
            devices = matching
            if len(matching) == 1:
                wanted = matching[0].id
    listing = [
        {
            "id": d.id,
            "name": d.name,
            "os": d.operating_system,
            "os_version": d.os_version,
            "compliance": d.compliance,
            "last_sync": d.last_sync.isoformat() if d.last_sync else None,
        }
        for d in devices
    ]
    command = run.arg("command").lower()
    if command == "list":
        await run.begin()
        return ActionOutcome(
            ok=True,
            code="listed",
            data={"devices": listing},
            message="Your devices: "
            + "; ".join(f"{d.name} ({d.operating_system})" for d in devices)
            + ".",
        )
    by_id = {d.id: d for d in devices}
    device = by_id.get(wanted)
    if device is None:
        return ActionOutcome(
            ok=False,
            code="needs_input",
            input_slot="device",
            data={"devices": listing},
            prompt="Which device?" if not wanted else "That isn't one of your devices. Which one?",
            choices=tuple(Button(f"{d.name} ({d.operating_system})", d.id) for d in devices),
        )
    if command not in ("sync", "restart"):
        return ActionOutcome(
            ok=False,
            code="needs_input",
            input_slot="command",
            prompt=f"What should I do with {device.name}?",
            choices=(Button("Sync with Intune", "sync"), Button("Restart it", "restart")),
        )
    if command == "restart":
        confirm = run.arg("confirm").lower()
        if confirm not in ("yes", "no"):
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="confirm",
                prompt=f"Restart {device.name} now? Unsaved work on it will be lost.",
                choices=(Button("Yes, restart", "yes", "danger"), Button("No", "no")),
            )
        if confirm == "no":
            return ActionOutcome(ok=True, code="cancelled", message="OK, I won't restart it.")
    graph_action = "syncDevice" if command == "sync" else "rebootNow"
    run.details.update(device_id=device.id, device=device.name, command=command)
    if run.dry:
        return await run.would(f"POST /deviceManagement/managedDevices/{{id}}/{graph_action}")
    await run.begin()
    receipt = await run.directory.device_command(device.id, "sync" if command == "sync" else "restart")
    message = (
        f"I've asked {device.name} to check in with Intune. If it's on and online it syncs within a "
        f"few minutes."
        if command == "sync"
        else f"{device.name} will restart in a few minutes if it's on and online."
    )
    return ActionOutcome(
        ok=True,
        code="done",
        request_id=receipt.request_id,
        message=message,
        data={"device": device.name, "command": command},
    )


ACTION = Action(
    name="device_actions",
    does="sync or restart one of your devices",
    does_for="sync or restart one of their devices",
    run=run,
    changes=True,
    needs=("command", "device", "os", "confirm"),
    calls=(
        "GET /users/{id}/managedDevices",
        "POST /deviceManagement/managedDevices/{id}/syncDevice",
        "POST /deviceManagement/managedDevices/{id}/rebootNow",
    ),
)
