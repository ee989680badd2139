"""Portal forms."""

from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator

# Longer than any real password; refused before it is hashed.
PASSWORD_MAX_LENGTH = 4096


class LoginForm(AuthenticationForm):
    """Django's login form with the attributes browsers and password managers look for.

    AuthenticationForm sets the username's max_length after the field is built, so no validator
    enforces it: an overlong name would reach authenticate(), and django-axes would then fail to
    store it in its 255-character column (a 500 on PostgreSQL). The validators are added here.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        username = self.fields["username"]
        username.widget.attrs.update(
            {"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        )
        username.validators.append(MaxLengthValidator(username.max_length or 150))
        password = self.fields["password"]
        password.max_length = PASSWORD_MAX_LENGTH
        password.validators.append(MaxLengthValidator(PASSWORD_MAX_LENGTH))
        password.widget.attrs.update(
            {"autocomplete": "current-password", "maxlength": str(PASSWORD_MAX_LENGTH)}
        )
