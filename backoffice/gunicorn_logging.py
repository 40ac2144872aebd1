"""gunicorn's logger with the callback secrets masked: `--logger-class backoffice.gunicorn_logging.MaskingLogger`.

The access log would print `POST /hooks/daraja/stk/<secret>/ HTTP/1.1`; this one prints
`POST /hooks/daraja/stk/***/ HTTP/1.1`, whatever the access-log format: every string atom (request line,
path, referer, headers, environ) is masked before formatting. The error log ("Error handling request
/hooks/...") and any handler a log config adds go through the same filter as Django's logs.
"""

from gunicorn.glogging import Logger

from backoffice.log_masking import SecretMaskingFilter, secret_masker


class MaskingLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)  # runs again on every reload (SIGHUP): add the filter once
        for log in (self.error_log, self.access_log):
            if not any(isinstance(existing, SecretMaskingFilter) for existing in log.filters):
                log.addFilter(SecretMaskingFilter())

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        mask = secret_masker()
        return {key: mask(value) if isinstance(value, str) else value for key, value in atoms.items()}
