"""The alert engine: rules are data, evaluation is pure (``ioc.domain.rules``), this does the I/O."""
