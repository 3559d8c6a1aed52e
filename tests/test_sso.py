"""Single sign-on (connectors/sso.py) against the local OpenID Connect provider."""

import logging
import urllib.parse

import httpx
import pytest
from django.contrib.auth.models import User

from connectors.models import AuditEvent
from tests.fixtures_oidc import CLIENT_SECRET

pytestmark = pytest.mark.django_db


def start(client) -> dict:
    """Begin a sign-in; the provider's authorize parameters."""
    response = client.get("/sso/login/?next=/admin/connectors/job/")
    assert response.status_code == 302
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response["Location"]).query))


def come_back(client, provider, params: dict, *, state: str | None = None):
    """Approve at the provider and follow its redirect back to the console."""
    approved = httpx.get(f"{provider.issuer}/approve", params=params)
    back = urllib.parse.urlsplit(approved.headers["Location"])
    query = dict(urllib.parse.parse_qsl(back.query))
    if state is not None:
        query["state"] = state
    return client.get(back.path, query)


def sign_in(client, provider):
    return come_back(client, provider, start(client))


def roles(username: str) -> list[str]:
    return sorted(User.objects.get(username=username).groups.values_list("name", flat=True))


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.wsgi_request._messages]


def test_sign_in_creates_the_user_with_the_roles_their_groups_grant(client, oidc_provider):
    oidc_provider.user = {
        "sub": "u-1",
        "preferred_username": "olga",
        "email": "olga@example.com",
        "groups": ["interlock-admins", "auditors", "cafeteria"],
    }
    params = start(client)
    assert params["code_challenge_method"] == "S256" and params["nonce"]
    response = come_back(client, oidc_provider, params)
    assert response.status_code == 302 and response["Location"] == "/admin/connectors/job/"
    user = User.objects.get(username="olga")
    assert (user.email, user.is_staff, user.is_superuser) == ("olga@example.com", True, False)
    assert not user.has_usable_password()
    assert roles("olga") == ["Compliance officer", "Integration admin"]
    assert client.get("/admin/connectors/connector/add/").status_code == 200
    event = AuditEvent.objects.get(action="auth.sso_roles")
    assert event.actor == "olga"
    assert event.changes == {"roles": ["Integration admin", "Compliance officer"], "removed": []}
    assert AuditEvent.objects.filter(action="auth.login", actor="olga").count() == 1


def test_a_group_taken_away_takes_the_role_away_at_the_next_sign_in(client, oidc_provider):
    oidc_provider.user["groups"] = ["interlock-admins", "approvers"]
    sign_in(client, oidc_provider)
    assert roles("olga") == ["Integration admin", "Reviewer"]
    client.logout()
    oidc_provider.user["groups"] = ["approvers"]
    sign_in(client, oidc_provider)
    assert roles("olga") == ["Reviewer"]
    assert client.get("/admin/connectors/connector/add/").status_code == 403
    last = AuditEvent.objects.filter(action="auth.sso_roles").first()
    assert last.changes == {"roles": ["Reviewer"], "removed": ["Integration admin"]}


def test_a_user_with_no_mapped_group_is_refused_with_a_reason(client, oidc_provider):
    oidc_provider.user["groups"] = ["approvers"]
    sign_in(client, oidc_provider)
    client.logout()
    oidc_provider.user["groups"] = ["cafeteria"]
    response = sign_in(client, oidc_provider)
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert "'olga' is in none of the groups that grant a role" in shown_messages(response)[0]
    assert roles("olga") == []  # the role the provider no longer grants is gone too
    assert "_auth_user_id" not in client.session
    refused = AuditEvent.objects.get(action="auth.sso_refused")
    assert refused.actor == "olga"
    page = client.get("/admin/login/")
    assert "is in none of the groups" in page.content.decode()


def test_a_state_this_browser_did_not_start_is_refused(client, oidc_provider):
    oidc_provider.user["groups"] = ["interlock-admins"]
    response = come_back(client, oidc_provider, start(client), state="forged-state")
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert "refused" in shown_messages(response)[0]
    assert not User.objects.filter(username="olga").exists()
    assert AuditEvent.objects.filter(action="auth.sso_refused").count() == 1


def test_an_id_token_with_another_sign_ins_nonce_is_refused(client, oidc_provider):
    oidc_provider.user["groups"] = ["interlock-admins"]
    oidc_provider.nonce_override = "nonce-of-another-sign-in"
    response = sign_in(client, oidc_provider)
    assert response["Location"] == "/admin/login/"
    assert "Nonce verification failed" in shown_messages(response)[0]
    assert not User.objects.filter(username="olga").exists()
    assert "_auth_user_id" not in client.session


def test_a_local_account_of_the_same_name_is_never_taken_over(client, oidc_provider):
    User.objects.create_superuser("olga", "o@example.com", "correct-horse-battery-1")
    oidc_provider.user["groups"] = ["approvers"]
    response = sign_in(client, oidc_provider)
    assert response["Location"] == "/admin/login/"
    assert "A local account named 'olga' exists" in shown_messages(response)[0]
    assert roles("olga") == [] and "_auth_user_id" not in client.session


def test_local_accounts_still_sign_in_with_single_sign_on_on(client, oidc_provider):
    User.objects.create_superuser("ada", "ada@example.com", "correct-horse-battery-1")
    page = client.get("/admin/login/").content.decode()
    assert 'href="/sso/login/' in page and "Sign in with Test IdP" in page
    response = client.post(
        "/admin/login/", {"username": "ada", "password": "correct-horse-battery-1"}
    )
    assert response.status_code == 302 and client.session["_auth_user_id"]
    assert oidc_provider.token_requests == []  # the provider was not asked


def test_the_provider_down_is_a_message_not_an_error(client, oidc_provider):
    oidc_provider.close()
    response = client.get("/sso/login/")
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert shown_messages(response) == ["Test IdP cannot be reached; try again."]


def test_single_sign_on_off_shows_no_button_and_no_endpoints(client, settings):
    settings.OIDC_ISSUER = ""
    assert "Sign in with" not in client.get("/admin/login/").content.decode()
    assert client.get("/sso/login/").status_code == 404
    assert client.get("/sso/callback/?code=x&state=y").status_code == 404


def test_the_client_secret_never_appears_in_logs_pages_or_the_audit_log(
    client, oidc_provider, caplog
):
    caplog.set_level(logging.DEBUG)
    oidc_provider.user["groups"] = ["interlock-admins"]
    pages = [sign_in(client, oidc_provider)]
    assert oidc_provider.token_requests[-1]["client_secret"] == CLIENT_SECRET  # it was used
    pages += [client.get(path) for path in ["/admin/", "/admin/connectors/auditevent/"]]
    client.logout()
    oidc_provider.user["groups"] = []  # refused
    pages.append(sign_in(client, oidc_provider))
    oidc_provider.echo_token_errors = True
    pages.append(sign_in(client, oidc_provider))
    pages.append(client.get("/admin/login/"))
    assert "refused the sign-in code (HTTP 400)" in pages[-1].content.decode()
    for page in pages:
        assert CLIENT_SECRET not in page.content.decode()
        assert CLIENT_SECRET not in str(page.headers)
    assert CLIENT_SECRET not in caplog.text
    for event in AuditEvent.objects.all():
        assert CLIENT_SECRET not in f"{event.actor} {event.changes} {event.object_repr}"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"OIDC_ROLE_MAP": "interlock-admins=admin"},
            "OIDC_ROLE_MAP: 'interlock-admins=admin' is not group=role with a role among "
            "integration_admin, compliance_officer, reviewer",
        ),
        (
            {"OIDC_ISSUER": "https://idp.example.com", "OIDC_CLIENT_ID": "console"},
            "OIDC_ISSUER is set, so single sign-on needs OIDC_CLIENT_SECRET and OIDC_ROLE_MAP too",
        ),
    ],
)
def test_a_bad_single_sign_on_setting_stops_startup_naming_it(tmp_path, variables, message):
    from tests.test_settings import load_settings

    result = load_settings(tmp_path, OIDC_CLIENT_SECRET="", **variables)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_callback_no_sign_in_started_or_the_provider_refused_is_audited(client, oidc_provider):
    for query in ["?code=abc&state=never-started", "?error=access_denied&state=x"]:
        response = client.get(f"/sso/callback/{query}")
        assert response.status_code == 302 and response["Location"] == "/admin/login/"
        assert shown_messages(response)[-1] == "Test IdP did not sign you in."
    assert AuditEvent.objects.filter(action="auth.sso_refused").count() == 2


@pytest.mark.parametrize("answer", [[], {"id_token": "not.a.jwt"}, {"id_token": 12}])
def test_a_token_answer_of_the_wrong_shape_is_a_message_not_an_error(client, oidc_provider, answer):
    oidc_provider.token_answer = answer
    response = sign_in(client, oidc_provider)
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert shown_messages(response)[-1] in (
        "Test IdP sent an answer we cannot use.",
        "The sign-in answer was refused: JWS token verification failed.",
    )
    assert "_auth_user_id" not in client.session
