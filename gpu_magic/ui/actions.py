"""The panel's buttons: Cancel (two clicks), Fetch results, Open full log.

Callbacks run on the kernel's main thread: they call the client without the widget lock held
(a cancel may take a round trip) and take the lock only to change widgets.
"""

from __future__ import annotations

import html

import ipywidgets as widgets


def button(label: str, css_class: str, icon: str) -> widgets.Button:
    button = widgets.Button(description=label, icon=icon, layout={"width": "auto"})
    button.add_class(css_class)
    return button


def user_namespace() -> dict | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns


class Confirmed:
    """A button that acts on its second click: the first arms it (``confirm``, red); it
    disarms when it acts or is disabled. Call ``click`` (widget lock not held) from the
    button's callback: True when this click is the confirming one."""

    def __init__(self, label: str, confirm: str, css_class: str, icon: str, lock):
        self.label, self.confirm, self.lock, self.armed = label, confirm, lock, False
        self.button = button(label, css_class, icon)

    def click(self) -> bool:
        with self.lock:
            if not self.armed:
                self.armed = True
                self.button.description, self.button.button_style = self.confirm, "danger"
                return False
            self.disarm()
            return True

    def enable(self, enabled: bool) -> None:
        """(lock held) Enabled or not; a disabled button forgets its first click."""
        self.button.disabled = not enabled
        if not enabled and self.armed:
            self.disarm()

    def disarm(self) -> None:
        self.armed = False
        self.button.description, self.button.button_style = self.label, ""


class MessageLine(widgets.HTML):
    """One line under a row of buttons: what the last click came to, red for a failure."""

    def __init__(self, lock):
        super().__init__()
        self.lock = lock
        self.add_class("gpu-magic-message")

    def say(self, message: str, error: bool = False) -> None:
        style = ' style="color:#c5221f"' if error else ""
        with self.lock:
            self.value = f"<span{style}>{html.escape(message)}</span>"


class Actions:
    def __init__(self, panel, namespace: dict | None = None):
        self.panel = panel
        self.namespace = namespace
        self.confirmed = Confirmed(
            "Cancel", "Really cancel?", "gpu-magic-cancel", "stop", panel.lock
        )
        self.cancel = self.confirmed.button
        self.fetch = button("Fetch results", "gpu-magic-fetch", "download")
        self.open_log = button("Open full log", "gpu-magic-open-log", "file-text")
        self.message = MessageLine(panel.lock)
        self.cancel.on_click(self.on_cancel)
        self.fetch.on_click(self.on_fetch)
        self.open_log.on_click(self.on_open_log)
        buttons = widgets.HBox([self.cancel, self.fetch, self.open_log])
        buttons.add_class("gpu-magic-buttons")
        self.row = [buttons, self.message]

    def say(self, message: str, error: bool = False) -> None:
        self.message.say(message, error)

    def refresh(self, job) -> None:
        """Called by the panel's apply (lock held) with the latest job."""
        self.confirmed.enable(not job.is_terminal)

    # -- cancel -------------------------------------------------------------------------------
    def on_cancel(self, _button=None) -> None:
        if not self.confirmed.click():
            return
        self.say("cancelling…")
        try:
            job = self.panel.client.cancel(self.panel.job_id)
        except Exception as exc:  # shown in the panel: a callback's traceback is invisible
            self.say(f"cancel failed: {exc}", error=True)
            return
        self.say(f"cancel requested: the job is {job.status.value}")
        self.panel.throttle.mark("job")

    # -- fetch --------------------------------------------------------------------------------
    def on_fetch(self, _button=None) -> None:
        self.say("fetching results…")
        try:
            values = self.panel.client.results.outputs(self.panel.job_id)
        except Exception as exc:
            self.say(f"fetch failed: {exc}", error=True)
            return
        namespace = self.namespace if self.namespace is not None else user_namespace()
        if namespace is None:
            self.say("no notebook namespace to load into; use job.outputs", error=True)
            return
        namespace.update(values)
        names = ", ".join(sorted(values))
        self.say(f"loaded {names} into the notebook" if values else "the job returned no outputs")

    # -- full log -----------------------------------------------------------------------------
    def on_open_log(self, _button=None) -> None:
        log = self.panel.logview
        if log.full_shown:
            log.hide_full()
            label = "Open full log"
        else:
            log.show_full(self.panel.feed.log_text())
            label = "Hide full log"
        with self.panel.lock:
            self.open_log.description = label
