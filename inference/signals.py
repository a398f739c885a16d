"""Keep object permissions from outliving their model (guardian's caveat).

Guardian stores grants with a generic reference, so deleting a model leaves its grants
behind; a later model reusing the primary key would inherit them. They go with the model,
and `accounts.tasks.object_permissions_sweep` catches any that slip through.
"""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_delete
from django.dispatch import receiver
from guardian.models import GroupObjectPermission, UserObjectPermission

from inference.models import Model


@receiver(post_delete, sender=Model, dispatch_uid="inference.model.object_permissions")
def _model_object_permissions_delete(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    content_type = ContentType.objects.get_for_model(Model)
    for grants in (UserObjectPermission, GroupObjectPermission):
        grants.objects.filter(content_type=content_type, object_pk=str(instance.pk)).delete()
