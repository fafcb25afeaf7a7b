from tests.conftest import FIXTURE_PLUGINS, pytest_plugins


def test_fixture_plugins_present() -> None:
    assert sorted(pytest_plugins) == sorted(FIXTURE_PLUGINS)
