"""The audit chain's status for the audit log page.

A full verification of a long chain takes minutes, too long for a page: the scheduler verifies
the whole chain every AUDIT_VERIFY_INTERVAL_SECONDS and keeps the result in Redis; the page
verifies only the events appended since that verified head. A short chain (or no stored result)
is verified in full on the page. `manage.py verify_audit` always verifies everything.
"""

import json
import logging

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from connectors import audit, broker
from connectors.models import AuditChainHead

logger = logging.getLogger(__name__)
KEY = "interlock:audit:verified"


def verify_and_store() -> audit.Verification:
    """The scheduler's task: verify everything, keep the result for the page."""
    result = audit.verify()
    stored = {**result.__dict__, "at": timezone.now().isoformat()}
    try:
        broker.get_redis().set(KEY, json.dumps(stored))
    except RedisError as error:
        logger.warning("cannot keep the audit verification: %s", error)
    if not result.is_valid:
        logger.error("audit chain broken at #%s: %s", result.broken_sequence, result.reason)
    return result


def current() -> tuple[audit.Verification | None, str]:
    """(the chain's status, when it was last fully verified); (None, "") if it is not known yet
    because the chain is too long to verify on a page and the scheduler has not run."""
    stored, verified_at = load()
    if stored is not None and not stored.is_valid:
        return stored, verified_at
    if stored is not None:
        since = audit.verify(start=(stored.head_sequence, stored.head_hash))
        if not since.is_valid:
            return since, ""
        total = stored.checked + since.checked
        return audit.Verification(
            True, total, since.head_sequence, head_hash=since.head_hash
        ), verified_at
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None or head.sequence <= settings.AUDIT_PAGE_VERIFY_LIMIT:
        return audit.verify(), ""  # verified in full, now
    return None, ""


def load() -> tuple[audit.Verification | None, str]:
    """The scheduler's last full verification and when it ran; (None, "") if there is none."""
    try:
        value = broker.get_redis().get(KEY)
    except RedisError:
        return None, ""
    if not value:
        return None, ""
    raw = json.loads(value)
    fields = {key: raw[key] for key in audit.Verification.__dataclass_fields__ if key in raw}
    return audit.Verification(**fields), raw.get("at", "")
