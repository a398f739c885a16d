"""The console's upstream-credential choice: the names set on this server, never a value."""

from django import forms

from inference.upstream_credentials import upstream_credential_names


def upstream_credential_field(*, help_text: str) -> forms.CharField:
    """A choice of the GATEHOUSE_UPSTREAM_* names, offered by `upstream_credential_choices_offer`."""
    return forms.CharField(
        required=False, label="Upstream credential", widget=forms.Select(), help_text=help_text
    )


def upstream_credential_choices_offer(form: forms.BaseForm, name: str = "credential_ref") -> None:
    """Offer the names set now (the environment is read per form, not once at import)."""
    widget: forms.Select = form.fields[name].widget
    widget.choices = [("", "none"), *((credential, credential) for credential in upstream_credential_names())]
