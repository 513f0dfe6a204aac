"""Camera pictures are personal data: privacy masks, and answering a data subject's request
(``ioc privacy ...``). See docs/privacy.md."""


class PrivacyError(ValueError):
    """A privacy command or the masks file cannot be used as given; the message says why."""
