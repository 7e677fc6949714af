"""fsnb.toml and backend URLs: a closed schema, one line naming the file, no secret ever shown."""

from __future__ import annotations

from pathlib import Path

import pytest

import fsnb
from fsnb.config import StoreConfig, _read_toml, load_config, redact_url, scrub, write_config
from fsnb.errors import StoreError

SECRET = "s3cr3t-pw"


def write_toml(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fsnb.toml").write_text(text)
    return directory


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[online]\nurl = "redis://127.0.0.1:99999/0"\n', "Port out of range"),  # a raw ValueError before
        ('[online]\nurl = "redis://127.0.0.1:0/0"\n', "port 0"),
        ('[online]\nurl = "redis://127.0.0.1:http/0"\n', "not a valid URL"),
        ('[online]\nurl = "redis://127.0.0.1:6379/zero"\n', "database 'zero'"),
        ('[online]\nurl = "redis:///0"\n', "names no host"),
        ('[online]\nurl = 6379\n', "must be a URL string"),
        ("[online]\nurl = [1, 2]\n", "must be a URL string"),
        ('[online]\nurl = "redis://h/0"\nport = 1\n', "unknown key 'port'"),
        ('[onlin]\nurl = "redis://h/0"\n', "unknown setting 'onlin'"),
        ('log_url = "redis://h/0"\n', "unknown setting 'log_url'"),
        ('[online\nurl = "redis://h/0"\n', "cannot read"),
        ('online = "mysql://nope"\n', "not supported; use 'sqlite'"),
        ('online = "redis://h/0\\nFLUSHALL"\n', "control characters"),
    ],
)
def test_malformed_fsnb_toml_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    store_dir = write_toml(tmp_path / "s", text)
    with pytest.raises(StoreError) as info:
        load_config(store_dir)
    text_of = str(info.value)
    assert "\n" not in text_of and message in text_of
    assert "fsnb.toml" in text_of
    with pytest.raises(fsnb.FsnbError):  # the store refuses to open, before it serves anything
        fsnb.FeatureStore(store_dir)


@pytest.mark.parametrize("url", ["redis://h:99999/0", "redis://h:6379/x", "ftp://h/0"])
def test_bad_url_argument_is_one_line(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreError) as info:
        fsnb.FeatureStore(tmp_path / "s", online=url)
    assert "\n" not in str(info.value) and "online store URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        'redis://default:pa"ss\\word@127.0.0.1:6379/0',
        "redis://default:a%23b'c@127.0.0.1:6379/2",
        "rediss://user:p%40ss@host.example:6380/1",
        "unix:///tmp/redis.sock?db=3",
    ],
)
def test_write_config_round_trips_any_url(tmp_path: Path, url: str) -> None:
    write_config(tmp_path, StoreConfig(online=url, log=url))
    assert _read_toml(tmp_path / "fsnb.toml") == {"online": {"url": url}, "log": {"url": url}}
    assert load_config(tmp_path) == StoreConfig(online=url, log=url)
    assert [p.name for p in tmp_path.iterdir()] == ["fsnb.toml"]  # no temporary file left


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis://alice:{SECRET}@127.0.0.1/0", "redis://alice:***@127.0.0.1/0"),
        (f"redis://127.0.0.1/0?password={SECRET}&db=1", "redis://127.0.0.1/0?password=***&db=1"),
        (f"unix:///run/redis.sock?password={SECRET}", "unix:///run/redis.sock?password=***"),
        (f"redis://{SECRET}@127.0.0.1/0", "redis://***@127.0.0.1/0"),
        (f"redis://al:{SECRET}#x@127.0.0.1/0", "redis://al:***@127.0.0.1/0"),  # unencoded '#': no parse
        (f"redis://al:a/{SECRET}@127.0.0.1/0", "redis://al:***@127.0.0.1/0"),
        (f"redis://al:{SECRET}@127.0.0.1:99999/0", "redis://al:***@127.0.0.1:99999/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in scrub(f"failed: {url}", url)
    assert SECRET not in repr(StoreConfig(online=url, log=url))
    with pytest.raises(StoreError) as info:  # none of these is a valid backend for a working store...
        load_config(Path("/nonexistent"), online=url.replace("127.0.0.1", "h:0") if "127" in url else url + "&db=x")
    assert SECRET not in str(info.value)  # ...and the refusal hides the password


def test_scrub_hides_a_password_echoed_by_a_client() -> None:
    url = f"redis://al:{SECRET.replace('-', '%2D')}@h/0"
    assert scrub(f"AUTH {SECRET} refused for {url}", url) == "AUTH *** refused for redis://al:***@h/0"


def test_redact_leaves_a_plain_url_alone() -> None:
    for url in ["redis://127.0.0.1:6379/0", "unix:///run/redis.sock?db=1", "rediss://h.example:6380/2?ssl_cert_reqs=none"]:
        assert redact_url(url) == url


def test_unreachable_redis_message_hides_the_password(tmp_path: Path) -> None:
    from fsnb.testing import free_port

    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreError) as info:
        fsnb.FeatureStore(tmp_path / "s", online=url)
    assert "cannot reach Redis at redis://:***@127.0.0.1:" in str(info.value)
    assert SECRET not in str(info.value)
    (tmp_path / "t").mkdir()
    write_toml(tmp_path / "t", f'[online]\nurl = "{url}"\n')
    with pytest.raises(StoreError) as info:
        fsnb.FeatureStore(tmp_path / "t")
    assert SECRET not in str(info.value)
    # a bad port in a URL with a password: the message shows where, never the secret
    with pytest.raises(StoreError) as info:
        fsnb.FeatureStore(tmp_path / "u", online=f"redis://:{SECRET}@127.0.0.1:99999/0")
    assert SECRET not in str(info.value) and ":***@" in str(info.value)


@pytest.fixture
def redis_user(redis_url: str) -> tuple[str, str]:
    """(URL with the right password, URL with a wrong one) of an ACL user on the test redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.acl_setuser("fsnb_test", enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all"], channels=["*"])
    client.close()
    right = redis_url.replace("redis://", f"redis://fsnb_test:{SECRET}@")
    wrong = redis_url.replace("redis://", f"redis://fsnb_test:not-{SECRET}-either@")
    return right, wrong


@pytest.mark.redis
def test_password_never_shown_by_a_working_store(tmp_path: Path, redis_user: tuple[str, str]) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    right, wrong = redis_user
    write_toml(tmp_path / "s", f'[online]\nurl = "{right}"\n[log]\nurl = "{right}"\n')
    store = fsnb.FeatureStore(tmp_path / "s")
    try:
        assert store.config.online == right  # the real URL is kept, only never shown
        shown = [repr(store), store._repr_html_(), repr(store.config), repr(store.online)]
        assert all(SECRET not in text for text in shown), shown
    finally:
        store.close()

    with pytest.raises(StoreError) as info:  # a wrong password: redis says so, the message hides it
        fsnb.FeatureStore(tmp_path / "b", online=wrong)
    assert SECRET not in str(info.value) and "\n" not in str(info.value)
    assert "cannot reach Redis at redis://fsnb_test:***@127.0.0.1:" in str(info.value)

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fsnb")
    try:
        ip.run_line_magic("fsnb", f"open {tmp_path / 'm'} --online {right}")
        with pytest.raises(UsageError) as usage:
            ip.run_line_magic("fsnb", f"open {tmp_path / 'n'} --online {wrong}")
        assert SECRET not in str(usage.value)
    finally:
        ip.run_line_magic("unload_ext", "fsnb")
