from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """Gatehouse's user, custom from the first migration so identity can grow in place.

    Roles are Django groups (see `accounts.roles`); teams, API keys and token
    revocation fields arrive with the identity work.
    """

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
