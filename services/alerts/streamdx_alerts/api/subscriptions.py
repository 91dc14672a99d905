"""Webhook subscription API: ``/v1/subscriptions`` and ``/v1/deliveries/dead``.

=======================================  =====================================================
``POST   /v1/subscriptions``             create (201): the response holds the secret, once
``GET    /v1/subscriptions``             list (never the secrets)
``GET    /v1/subscriptions/{id}``        one subscription
``PATCH  /v1/subscriptions/{id}``        change url, description, filters, enabled
``DELETE /v1/subscriptions/{id}``        delete (204); its queued deliveries are dropped
``POST   /v1/subscriptions/{id}/rotate-secret``  new secret (generated, or given), shown once;
                                         the old one co-signs for 24 h
``GET    /v1/deliveries/dead``           recent dead-lettered deliveries (replay them with
                                         ``streamdx alerts replay``)
=======================================  =====================================================

Every route needs ``Authorization: Bearer <ALERTS_ADMIN_TOKEN>``
(:func:`streamdx_alerts.api.auth.require_admin`, compared in constant time): 401 without it
or with a wrong one, 503 when no token is configured. Validation
errors are 422 and never echo the submitted values (a body may hold a secret).

The service's app includes it with :func:`include_subscriptions_api`; the routes read their
dependencies from ``app.state.webhook_subscriptions`` and the token from
``app.state.admin_token`` (no globals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from streamdx_alerts.api.auth import require_admin
from streamdx_alerts.settings import AlertsSettings
from streamdx_alerts.webhooks.queue import DeliveryQueue
from streamdx_alerts.webhooks.signing import new_secret
from streamdx_alerts.webhooks.subscriptions import (
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionStore,
    SubscriptionUpdate,
    SubscriptionView,
)
from streamdx_alerts.webhooks.urls import UnsafeAddress, validate_url

__all__ = [
    "DeadDeliveryOut",
    "RotateSecret",
    "SubscriptionsApi",
    "bind_subscriptions_api",
    "include_subscriptions_api",
    "subscriptions_router",
]


@dataclass(frozen=True)
class SubscriptionsApi:
    """What the routes need, kept in ``app.state.webhook_subscriptions``."""

    settings: AlertsSettings
    store: SubscriptionStore
    queue: DeliveryQueue


class RotateSecret(BaseModel):
    """Optional body of ``rotate-secret``: a secret chosen by the administrator."""

    secret: str | None = None


class DeadDeliveryOut(BaseModel):
    """One dead-lettered delivery."""

    subscription_id: str
    event_id: str
    attempts: int
    last_error: str
    failed_at: float


def include_subscriptions_api(app: FastAPI, settings: AlertsSettings, redis: Redis | None = None) -> None:
    """Add the subscription routes to ``app`` (and their dependencies when ``redis`` is given).

    Parameters
    ----------
    app : FastAPI
        The alerts service's app.
    settings : AlertsSettings
        ``ALERTS_ADMIN_TOKEN``, ``WEBHOOK_ALLOW_PRIVATE``, ``WEBHOOK_RECORD_TTL_S``.
    redis : Redis or None
        The shared Redis client. An app that opens it in its lifespan passes ``None`` here and
        calls :func:`bind_subscriptions_api` there.
    """
    app.include_router(subscriptions_router())
    if redis is not None:
        bind_subscriptions_api(app, settings, redis)


def bind_subscriptions_api(app: FastAPI, settings: AlertsSettings, redis: Redis) -> SubscriptionsApi:
    """Set the routes' dependencies in ``app.state`` (and ``app.state.admin_token`` if unset)."""
    api = SubscriptionsApi(settings, SubscriptionStore(redis), DeliveryQueue(redis, settings.webhook_record_ttl_s))
    app.state.webhook_subscriptions = api
    if getattr(app.state, "admin_token", None) is None:  # read by streamdx_alerts.api.auth.require_admin
        app.state.admin_token = settings.alerts_admin_token
    return api


def get_api(request: Request) -> SubscriptionsApi:
    """The routes' dependencies (``app.state.webhook_subscriptions``)."""
    api: SubscriptionsApi = request.app.state.webhook_subscriptions
    return api


Api = Annotated[SubscriptionsApi, Depends(get_api)]


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def _unprocessable(field: str, msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": msg, "type": "value_error"}])


def _check_host(api: SubscriptionsApi, url: str | None) -> None:
    if url is None:
        return
    try:
        validate_url(url, allow_private=api.settings.webhook_allow_private)
    except UnsafeAddress as exc:
        raise _unprocessable("url", str(exc)) from None


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def subscriptions_router() -> APIRouter:
    """The routes (see the module doc), all behind :func:`require_admin`."""
    router = APIRouter(tags=["webhooks"], dependencies=[Depends(require_admin)])
    missing: dict[int | str, dict[str, Any]] = {404: {"description": "No such subscription"}}

    @router.post("/v1/subscriptions", status_code=201, response_model=SubscriptionCreated,
                 openapi_extra=_body_schema(SubscriptionCreate))
    async def create_subscription(api: Api, body: Annotated[Any, Body()]) -> SubscriptionCreated:
        try:
            spec = SubscriptionCreate.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(422, _errors(exc)) from None
        _check_host(api, spec.url)
        secret = spec.secret.get_secret_value() if spec.secret is not None else new_secret()
        return (await api.store.create(spec, secret)).created_view()

    @router.get("/v1/subscriptions", response_model=list[SubscriptionView])
    async def list_subscriptions(api: Api) -> list[SubscriptionView]:
        return [s.view() for s in await api.store.list_all()]

    @router.get("/v1/subscriptions/{subscription_id}", response_model=SubscriptionView, responses=missing)
    async def get_subscription(api: Api, subscription_id: str) -> SubscriptionView:
        sub = await api.store.get(subscription_id)
        if sub is None:
            raise HTTPException(404, "no such subscription")
        return sub.view()

    @router.patch("/v1/subscriptions/{subscription_id}", response_model=SubscriptionView, responses=missing,
                  openapi_extra=_body_schema(SubscriptionUpdate))
    async def update_subscription(api: Api, subscription_id: str, body: Annotated[Any, Body()]) -> SubscriptionView:
        try:
            patch = SubscriptionUpdate.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(422, _errors(exc)) from None
        _check_host(api, patch.url)
        try:
            sub = await api.store.update(subscription_id, patch)
        except ValueError as exc:
            raise _unprocessable("", str(exc)) from None
        if sub is None:
            raise HTTPException(404, "no such subscription")
        return sub.view()

    @router.delete("/v1/subscriptions/{subscription_id}", status_code=204, responses=missing,
                   response_class=Response)
    async def delete_subscription(api: Api, subscription_id: str) -> Response:
        if not await api.store.delete(subscription_id):
            raise HTTPException(404, "no such subscription")
        return Response(status_code=204)

    @router.post("/v1/subscriptions/{subscription_id}/rotate-secret", response_model=SubscriptionCreated,
                 responses=missing)
    async def rotate_secret(api: Api, subscription_id: str,
                            body: Annotated[Any, Body()] = None) -> SubscriptionCreated:
        try:
            given = RotateSecret.model_validate(body or {}).secret
            secret = given if given is not None else new_secret()
            sub = await api.store.rotate_secret(subscription_id, secret)
        except ValidationError as exc:
            raise HTTPException(422, _errors(exc)) from None
        except ValueError as exc:
            raise _unprocessable("secret", str(exc)) from None
        if sub is None:
            raise HTTPException(404, "no such subscription")
        return sub.created_view()

    @router.get("/v1/deliveries/dead", response_model=list[DeadDeliveryOut])
    async def dead_deliveries(api: Api, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeadDeliveryOut]:
        return [DeadDeliveryOut(subscription_id=d.subscription_id, event_id=d.event_id, attempts=d.attempts,
                                last_error=d.last_error, failed_at=d.failed_at)
                for d in await api.queue.dead_letters(limit)]

    return router
