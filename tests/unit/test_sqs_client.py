"""The SQS client factory's changes to botocore's per-call work keep what botocore sends."""

from __future__ import annotations

from typing import Any

from aiobotocore.session import get_session
from botocore.context import ClientContext, reset_context, set_context
from botocore.useragent import UserAgentString, register_feature_id

from conveyor.sqs.client import LOCAL_DUMMY_CREDENTIAL, cache_user_agent


async def test_the_user_agent_is_botocores_own_built_once_per_set_of_features() -> None:
    session = get_session()
    async with session.create_client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id=LOCAL_DUMMY_CREDENTIAL,
        aws_secret_access_key=LOCAL_DUMMY_CREDENTIAL,
    ) as client:
        creator: Any = client._user_agent_creator  # type: ignore[attr-defined]
        assert isinstance(creator, UserAgentString)
        built = []

        def counting() -> str:
            built.append(1)
            return UserAgentString.to_string(creator)

        creator.to_string = counting  # type: ignore[method-assign]  # to count the builds
        cache_user_agent(client)
        plain = creator.to_string()
        assert plain == UserAgentString.to_string(creator)
        assert creator.to_string() == plain
        assert len(built) == 1  # built once
        token = set_context(ClientContext())
        try:
            register_feature_id("RETRY_MODE_STANDARD")  # a feature of this call: another header
            featured = creator.to_string()
            assert featured == UserAgentString.to_string(creator)
            assert featured != plain
            assert creator.to_string() == featured
        finally:
            reset_context(token)
        assert creator.to_string() == plain
        assert len(built) == 2
