"""Celery tasks: raising spend alerts (beat, every minute) and posting them to webhooks."""

from celery import Task, shared_task

from spend.alerts import WEBHOOK_TRIES, WebhookFailed, spend_alerts_check, webhook_delivery_send

# Seconds before the next try of a delivery: 2, 4, 8, ... at most 10 minutes.
_BACKOFF_CAP_SECONDS = 600


@shared_task(name="spend.tasks.spend_alerts_check", ignore_result=True)
def spend_alerts_check_task() -> int:
    return len(spend_alerts_check())


@shared_task(bind=True, name="spend.tasks.webhook_deliver", ignore_result=True, max_retries=WEBHOOK_TRIES - 1)
def webhook_deliver(self: Task, delivery_id: int) -> None:  # type: ignore[type-arg]
    """One try of a delivery; a failed one comes back after a backoff, until the last."""
    if self.request.is_eager:
        _deliver_now(delivery_id)
        return
    try:
        last_try = self.request.retries >= (self.max_retries or 0)
        webhook_delivery_send(delivery_id=delivery_id, last_try=last_try)
    except WebhookFailed as failed:
        raise self.retry(
            exc=failed, countdown=min(_BACKOFF_CAP_SECONDS, 2 ** (self.request.retries + 1))
        ) from None


def _deliver_now(delivery_id: int) -> None:
    """Without a worker to come back later (no broker: the embedded default), every try now."""
    for attempt in range(WEBHOOK_TRIES):
        try:
            webhook_delivery_send(delivery_id=delivery_id, last_try=attempt == WEBHOOK_TRIES - 1)
        except WebhookFailed:
            continue
        return
