"""LTI 1.3 Advantage, the grader as a tool: the platform's services reached
with the tool's own key.

- :mod:`.keys`: the tool's RSA key and its public JWKS, registered with the platform;
- :mod:`.tool`: the tool's registration (a TOML file) and the OAuth 2 client-credentials
  grant that turns the key into an access token;
- :mod:`.services`: one authenticated request to a platform service, retries and paging;
- :mod:`.lineitems`: Assignment and Grade Services line items, found or created;
- :mod:`.memberships`: Names and Role Provisioning Services, the class as a roster;
- :mod:`.scores`: one AGS Score per student, exported or published.
"""
