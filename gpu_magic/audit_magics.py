"""``%gpu_audit``: the audit log in a notebook, a thin adapter over ``audit.AuditLog``.

A magics class beside ``magics.GPUMagics`` (registered by ``load_ipython_extension``); it shares
that module's argument parsing and error display.
"""

from __future__ import annotations

import json

from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .formatting import audit_table
from .magics import ClientMagics, parse, user_errors


@magics_class
class AuditMagics(ClientMagics):
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("job", nargs="?", help="only the records of this job (id or name)")
    @argument("--verify", action="store_true", help="check that no record was changed, "
              "removed or reordered")  # fmt: skip
    @argument("--limit", type=int, default=50, metavar="N", help="the last N records (50)")
    @argument("--json", action="store_true", help="the records as JSON lines")
    @line_magic
    @user_errors
    def gpu_audit(self, line: str):
        """Show the audit log: every remote command, transfer, submission, cancellation,
        retry, deletion and trust decision, newest last; --verify checks its hash chain."""
        opts = parse(self.gpu_audit, line)
        if opts is None:
            return None
        audit = self.client.audit
        if opts.verify:
            print(f"gpu_magic: {audit.verify()}")
            return None
        job_id = self.client.store.find(opts.job).id if opts.job else None
        records = audit.records(job_id, limit=opts.limit)
        print("\n".join(map(json.dumps, records)) if opts.json else audit_table(records))
        return None
