"""Authentication: the development OpenID provider and the bearer-token verifier.

Import the submodules directly (`shared.auth.verify`, `shared.auth.provider`); this
package imports nothing so that the API's cold start only pays for what it uses.
"""
