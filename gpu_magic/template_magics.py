"""``%gpu_template``: list, show, save and delete job templates (a thin adapter over
``templates``; registered beside ``magics.GPUMagics``, sharing its parsing and error display).
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import formatting
from .errors import ConfigError
from .magics import ClientMagics, parse, user_errors
from .submit_options import SubmitOptions

NEEDS_NAME = ("show", "save", "delete")


@magics_class
class TemplateMagics(ClientMagics):
    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help")
    @argument("action", nargs="?", choices=["list", "show", "save", "delete"], default="list",
              help="what to do (list)")  # fmt: skip
    @argument("name", nargs="?", help="the template (show, save, delete)")
    @argument("--from", dest="source", metavar="JOB",
              help="save: the options of this job (default: the newest submission)")  # fmt: skip
    @argument("--extends", metavar="BASE", help="save: keep only what differs from BASE")
    @argument("--force", action="store_true", help="save: replace a template of that name")
    @line_magic
    @user_errors
    def gpu_template(self, line: str):
        """Job templates: named option sets for %%gpu_submit --template NAME.

        %gpu_template list               the templates, with what each sets
        %gpu_template show NAME          every option NAME gives, and which template set it
        %gpu_template save NAME          the newest submission's options (less the cell's own:
                                         name, inputs, outputs, args) as template NAME
        %gpu_template delete NAME
        Templates live in the clusters file as [templates.NAME] tables (extends = "BASE")."""
        opts = parse(self.gpu_template, line)
        if opts is None:
            return None
        if opts.action in NEEDS_NAME and not opts.name:
            raise UsageError(f"%gpu_template {opts.action} needs a NAME; see --help")
        templates = self.client.clusters.templates
        if opts.action == "list":
            print(formatting.template_list(templates))
        elif opts.action == "show":
            print(formatting.template_view(templates, opts.name))
        elif opts.action == "save":
            print(self._save(opts))
        else:
            templates.delete(opts.name)
            print(f"gpu_magic: template {opts.name!r} deleted")
        return None

    def _save(self, opts) -> str:
        templates = self.client.clusters.templates
        if opts.name in templates.names() and not opts.force:
            raise ConfigError(f"template {opts.name!r} exists; --force replaces it")
        job = self._source(opts.source)
        base = templates.options(opts.extends) if opts.extends else SubmitOptions()
        options = SubmitOptions.of_request(job.request).beyond(base)
        templates.save(opts.name, options, extends=opts.extends)
        saved = formatting.options_words(options.to_template()) or "no options (the defaults)"
        base = f", extending {opts.extends!r}" if opts.extends else ""
        return f"gpu_magic: template {opts.name!r} saved from job {job.id}{base}: {saved}"

    def _source(self, source: str | None):
        if source is not None:
            return self.client.store.find(source)
        newest = self.client.store.list(limit=1)
        if not newest:
            raise ConfigError("no job submitted yet: submit one, or name one with --from JOB")
        return newest[0]
