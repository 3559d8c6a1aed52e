"""OpenAPI description of our authentication, for drf-spectacular."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "connectors.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An Interlock API key (`ilk_…`), as `Authorization: Bearer <key>` or "
            "`X-Api-Key: <key>`. Keys with a signing secret also need Standard Webhooks headers.",
        }
