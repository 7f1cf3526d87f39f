"""Bounded demo traffic for a local stack, so the dashboard has something to show.

Signs up a handful of users, wires a small follow graph, then for ``--seconds`` mixes feed
reads, posts, likes and a few requests that fail on purpose (404, 400). Loopback only, a
fixed request rate, and it stops by itself. Stays under the API's default rate limits
(20 sign-ups and 300 writes a minute per IP).

    .venv/bin/python infra/grafana/demo_traffic.py --seconds 300
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import requests


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default="http://127.0.0.1:3000")
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=6.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if urlparse(args.api).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("demo traffic only goes to a local stack (loopback)")
    rng = random.Random(args.seed)
    session = requests.Session()

    def call(method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return session.request(method, args.api + path, headers=headers, timeout=30, **kwargs)

    users = []
    for _ in range(args.users):
        body = {"username": f"demo_{uuid.uuid4().hex[:10]}", "password": "correct horse 1"}
        response = call("POST", "/auth/signup", json=body)
        response.raise_for_status()
        data = response.json()
        users.append({"id": data["user"]["user_id"], "token": data["access_token"]})
        time.sleep(0.2)
    # A skewed graph: the first users are popular, so fan-out sizes differ.
    for follower in users:
        for followee in rng.sample(users, k=min(len(users) - 1, rng.randint(2, 6))):
            if followee is not follower:
                call("POST", f"/users/{followee['id']}/follow", follower["token"])
    seen_posts: list[str] = []
    deadline = time.monotonic() + args.seconds
    sent = 0
    while time.monotonic() < deadline:
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.55:
            items = call("GET", "/feed?limit=20", user["token"]).json().get("items", [])
            seen_posts += [item["post_id"] for item in items[:3]]
            seen_posts = seen_posts[-200:]
        elif roll < 0.75:
            call("POST", "/posts", user["token"], json={"text": f"demo post {sent}"})
        elif roll < 0.87 and seen_posts:
            call("POST", f"/posts/{rng.choice(seen_posts)}/like", user["token"])
        elif roll < 0.94:
            call("GET", f"/posts/{rng.choice(seen_posts) if seen_posts else 'missing'}", user["token"])
        elif roll < 0.97:
            call("GET", "/posts/01JDQ7Z8M3K2P4R6T8V0W2X4Y6", user["token"])  # 404
        else:
            call("POST", "/posts", user["token"], json={"text": ""})  # 400
        sent += 1
        time.sleep(1.0 / args.rate)
    print(f"sent {sent} requests from {len(users)} users")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
