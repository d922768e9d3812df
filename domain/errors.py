"""Domain errors: each says what was wrong and what to do."""


class DomainError(ValueError):
    """A command that breaks a rule of the model."""


class NoPriceError(DomainError):
    """No price version is in force for a model at a time."""


class KeyNotUsableError(DomainError):
    """A revoked or expired key was asked to do something only a live key can do."""


class PrincipalInactiveError(DomainError):
    """A deactivated user was asked to act."""
