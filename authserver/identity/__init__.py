"""Use cases: accounts, users, login with its second factors, verification, tokens,
consents, clients, authorization and browser logins. Free of HTTP: the front doors
(`api`, `oauth`, `pages`, `cli`) call these and render what they return or raise.
"""
