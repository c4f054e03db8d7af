"""SIP trunks on the wire: REGISTER toward a registering trunk (status written back), and a PHONE call placed
through a trunk (number format, digest credentials, channel limit), each against a real sipp peer."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice import trunks
from callplane.core.voice.trunk_models import NumberFormat, SipTrunk, TrunkAdminStatus, TrunkKind
from callplane.live import registrar as registrar_module
from callplane.media.engine import CallAnswered, CallEnded
from callplane.media.sip import SippyCallEngine
from callplane.testing.sipp import Sipp, engine_config, free_even_port_pair, free_udp_port, next_event, render_scenario
from tests.voice.support import database

SCENARIOS = Path(__file__).parent / "scenarios"
BOX = SecretBox("0" * 43 + "=")
LOOPBACK = TargetPolicy.from_config(["127.0.0.1/32"])  # sipp plays the registrar on loopback

CHALLENGES = [
    pytest.param("401", "Unauthorized", "WWW-Authenticate", "Authorization", id="401"),
    pytest.param("407", "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization", id="407"),
]


def _peer(scenario: Path) -> Sipp:
    return Sipp(
        scenario, sip_port=free_udp_port(), media_port=free_even_port_pair(), extra=["-m", "1", "-timeout", "30s"]
    )


def _digest_is_valid(credentials: str, *, method: str, username: str, password: str) -> bool:
    fields = {name: quoted or bare for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', credentials)}
    assert fields["username"] == username and fields["qop"] == "auth"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{fields['realm']}:{password}")
    ha2 = md5(f"{method}:{fields['uri']}")
    expected = md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
    return bool(fields["response"] == expected)


async def _status_of(sessions: async_sessionmaker[AsyncSession], trunk_id: str) -> tuple[str | None, str | None]:
    async with sessions() as session:
        trunk = await session.get(SipTrunk, trunk_id)
        assert trunk is not None
        return trunk.registration_status, trunk.registration_detail


async def _wait_for_status(sessions: async_sessionmaker[AsyncSession], trunk_id: str, wanted: str) -> str | None:
    for _ in range(300):
        status, detail = await _status_of(sessions, trunk_id)
        if status == wanted:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"trunk never became {wanted}: {await _status_of(sessions, trunk_id)}")


@pytest.mark.parametrize(("code", "phrase", "challenge_header", "auth_header"), CHALLENGES)
def test_registered_trunk_registers_and_its_status_follows_the_registrar(
    tmp_path: Path, media_cache: Path, code: str, phrase: str, challenge_header: str, auth_header: str
) -> None:
    async def scenario() -> None:
        registrar_peer = _peer(
            render_scenario(
                "uas_register.xml", tmp_path, CODE=code, PHRASE=phrase,
                CHALLENGE_HEADER=challenge_header, AUTH_HEADER=auth_header,
            )
        )  # fmt: skip
        engine = SippyCallEngine(engine_config(media_cache))
        async with database(tmp_path) as (sessions, account_id):
            async with sessions() as session, session.begin():
                trunk = await trunks.create_trunk(
                    session=session,
                    account_id=account_id,
                    spec=trunks.TrunkSpec(
                        name="carrier",
                        kind=TrunkKind.REGISTERED,
                        host="127.0.0.1",
                        port=registrar_peer.sip_port,
                        channel_limit=2,
                        username="alice",
                        password="s3cret",
                    ),
                    secret_box=BOX,
                )
                trunk_id = trunk.id
            assert (await _status_of(sessions, trunk_id))[0] == "UNREGISTERED"
            await engine.start()
            registrar = registrar_module.TrunkRegistrar(
                engine=engine, sessions=sessions, secret_box=BOX, policy=LOOPBACK
            )
            stop = asyncio.Event()
            try:
                await registrar_peer.start()
                await asyncio.sleep(0.2)  # sipp binds its port
                running = asyncio.create_task(registrar.run_forever(stop, poll_s=30))
                assert await _wait_for_status(sessions, trunk_id, "REGISTERED") == "200 OK"
                # Disabling the trunk unregisters it (expires=0, checked by sipp) on the next reconcile.
                async with sessions() as session, session.begin():
                    await trunks.set_admin_status(
                        session=session, account_id=account_id, trunk_id=trunk_id, status=TrunkAdminStatus.DISABLED
                    )
                registrar.poke()
                result = await registrar_peer.finished()
                assert result.returncode == 0, result.output
                assert await _wait_for_status(sessions, trunk_id, "UNREGISTERED") == "unregistered"
                stop.set()
                await asyncio.wait_for(running, 30)
            finally:
                stop.set()
                registrar_peer.kill()
                await engine.stop()
        logged = re.search(r"CREDENTIALS\s+(.*)", result.logs())
        assert logged is not None, result.logs()
        assert _digest_is_valid(logged.group(1), method="REGISTER", username="alice", password="s3cret")

    asyncio.run(scenario())


def test_phone_call_through_a_trunk_uses_its_number_format_credentials_and_channel_limit(
    tmp_path: Path, media_cache: Path
) -> None:
    async def scenario() -> None:
        scenario_file = SCENARIOS / "uas_trunk_invite.xml"
        text = scenario_file.read_text()
        values = {
            "TO_USER": "14155550100",
            "FROM_USER": "14155550199",
            "CODE": "407",
            "PHRASE": "Proxy Authentication Required",
            "CHALLENGE_HEADER": "Proxy-Authenticate",
            "AUTH_HEADER": "Proxy-Authorization",
        }
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        (tmp_path / scenario_file.name).write_text(text)
        carrier = _peer(tmp_path / scenario_file.name)
        engine = SippyCallEngine(engine_config(media_cache))
        channels = trunks.TrunkChannels()
        async with database(tmp_path) as (sessions, account_id):
            async with sessions() as session, session.begin():
                trunk = await trunks.create_trunk(
                    session=session,
                    account_id=account_id,
                    spec=trunks.TrunkSpec(
                        name="carrier",
                        kind=TrunkKind.STATIC,
                        host="127.0.0.1",
                        port=carrier.sip_port,
                        channel_limit=1,
                        username="alice",
                        password="s3cret",
                        number_format=NumberFormat.INTERNATIONAL,
                    ),
                    secret_box=BOX,
                )
                trunk_id = trunk.id

            async def through_trunk() -> registrar_module.OutboundCall:
                async with sessions() as session:
                    return await registrar_module.phone_call_through_trunk(
                        session=session,
                        account_id=account_id,
                        trunk_id=trunk_id,
                        phone_number="+1 415 555 0100",
                        from_number="+14155550199",
                        secret_box=BOX,
                        channels=channels,
                    )

            outbound = await through_trunk()
            assert (outbound.to_user, outbound.from_user, outbound.trunk.username) == (
                "14155550100",
                "14155550199",
                "alice",
            )
            with pytest.raises(trunks.TrunkChannelsExhausted):
                await through_trunk()  # the one channel is held by the call being placed
            await engine.start()
            events = engine.subscribe()
            try:
                await carrier.start()
                await asyncio.sleep(0.2)
                call_id = await engine.dial(outbound)
                await next_event(events, CallAnswered, timeout_s=30)
                await engine.hangup(call_id)
                await next_event(events, CallEnded, timeout_s=30)
                channels.release(trunk_id)
                result = await carrier.finished()
                assert result.returncode == 0, result.output
            finally:
                carrier.kill()
                await engine.stop()
            assert channels.active(trunk_id) == 0
        logged = re.search(r"CREDENTIALS\s+(.*)", result.logs())
        assert logged is not None, result.logs()
        assert _digest_is_valid(logged.group(1), method="INVITE", username="alice", password="s3cret")

    asyncio.run(scenario())


def test_numbers_are_written_in_the_trunks_format() -> None:
    assert trunks.format_number("+44 20 7946 0958", NumberFormat.E164) == "+442079460958"
    assert trunks.format_number("+44 20 7946 0958", NumberFormat.INTERNATIONAL) == "442079460958"
    assert trunks.format_number("(415) 555-0100", NumberFormat.US_NATIONAL) == "4155550100"
    assert trunks.format_number("+442079460958", NumberFormat.US_NATIONAL) == "442079460958"
    with pytest.raises(trunks.InvalidPhoneNumber):
        trunks.format_number("12", NumberFormat.E164)
