"""Stdout callback for the module tests: every task's full result (diff included) as one JSON document.

ansible-core 2.19 no longer ships a json callback (it moved to ansible.posix), and the tests want
exactly what the module returned, so they use this one.
"""

from __future__ import annotations

import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase
from ansible.vars.clean import module_response_deepcopy, strip_internal_keys


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "task_results"

    def __init__(self):
        super().__init__()
        self.results = []

    def _record(self, result, status):
        data = strip_internal_keys(module_response_deepcopy(result._result))
        data["failed"] = status == "failed"  # not always in the result itself
        self.results.append({"host": result._host.get_name(), "task": result._task.get_name(),
                             "status": status, "result": data})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps({"results": self.results}, cls=AnsibleJSONEncoder, sort_keys=True))
