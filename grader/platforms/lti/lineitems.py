"""AGS line items: the gradebook column an assignment's scores go to.

A line item is found in the context's line items service by ``resourceId``
(the assignment's name) and ``tag`` (``grader``), both as query filters and
checked again on what comes back (a platform may ignore the filters), over
every page.  If there is none, one is created with ``scoreMaximum`` (the
assignment's points) and ``label`` (its title).  Two line items matching is an
error: the grader will not guess which column is meant.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from grader.errors import LmsError
from grader.platforms.lti.services import ServiceClient, with_query
from grader.platforms.lti.tool import SCOPE_LINEITEM

LINEITEM_MEDIA_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
CONTAINER_MEDIA_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
TAG = "grader"


class LineItem(BaseModel):
    """The members of an AGS line item the grader reads; others are ignored."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)

    id: str = Field(description="the line item's URL")
    label: str = ""
    score_maximum: float | None = None
    resource_id: str | None = None
    tag: str | None = None


def find_lineitems(client: ServiceClient, lineitems_url: str, *, resource_id: str, tag: str = TAG) -> list[LineItem]:
    items = client.get_all(
        with_query(lineitems_url, resource_id=resource_id, tag=tag),
        scopes=[SCOPE_LINEITEM],
        accept=CONTAINER_MEDIA_TYPE,
    )
    found = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        line = LineItem.model_validate(item)
        if line.resource_id == resource_id and line.tag == tag:
            found.append(line)
    return found


def lineitem_for(
    client: ServiceClient,
    lineitems_url: str,
    *,
    resource_id: str,
    label: str,
    score_maximum: float,
    tag: str = TAG,
) -> LineItem:
    """The assignment's line item, found or created (see the module's text)."""
    found = find_lineitems(client, lineitems_url, resource_id=resource_id, tag=tag)
    if len(found) > 1:
        raise LmsError(
            f"{len(found)} line items have resourceId {resource_id!r} and tag {tag!r} "
            f"({', '.join(item.id for item in found)}); give the one to use with --lineitem"
        )
    if found:
        return found[0]
    created, _ = client.send(
        "POST",
        lineitems_url,
        scopes=[SCOPE_LINEITEM],
        accept=LINEITEM_MEDIA_TYPE,
        content_type=LINEITEM_MEDIA_TYPE,
        body={"scoreMaximum": score_maximum, "label": label, "resourceId": resource_id, "tag": tag},
        what="line items URL",
    )
    if not isinstance(created, dict) or not isinstance(created.get("id"), str):
        raise LmsError(f"the platform created a line item for {resource_id!r} but did not answer with its id")
    return LineItem.model_validate(created)
