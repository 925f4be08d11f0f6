"""HTTP routes of the auth service."""

from fastapi import APIRouter

from auth.api.routes import invitations, tokens, users

routers: list[APIRouter] = [tokens.router, users.router, invitations.router]
