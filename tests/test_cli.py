"""The command line: the demo runs end to end and reports what it did; commands that
cannot do what they are asked say why in one line."""

import socket

import pytest

from actorkube.apiserver._kubernetesservice import advertise_address
from actorkube.cli.distributed import DistributedCluster
from actorkube.cli.main import main
from actorkube.cli.process import event_ttl


def test_demo_runs_and_survives_its_crash(capsys) -> None:
    assert main(["demo", "--messages", "2000"]) == 0
    out = capsys.readouterr().out
    assert "counter failed as planned: ValueError: poison word" in out
    assert "splitter saw 2,001 lines" in out
    assert "dead letters: 0" in out


def test_a_component_without_its_cluster_says_what_is_missing(tmp_path, capsys) -> None:
    assert main(["scheduler", "--data-dir", str(tmp_path / "none"),
                 "--apiservers", "127.0.0.1:1"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("actorkube scheduler: ") and "transport.token is missing" in err
    assert "\n" not in err  # one line, no traceback
    assert not (tmp_path / "none").exists()  # a component makes nothing


def test_up_distributed_refuses_a_taken_address_and_a_directory_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["up", "--distributed", "--data-dir", str(tmp_path / "a"),
                     "--port", str(port)]) == 1  # fmt: skip
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    cluster = DistributedCluster(tmp_path / "b", port=0, say=lambda _: None)
    try:
        assert main(["up", "--distributed", "--data-dir", str(tmp_path / "b")]) == 1
        assert "another actorkube up --distributed runs on" in capsys.readouterr().err
    finally:
        cluster.close()


def test_up_distributed_refuses_an_etcd_member_whose_data_is_gone(tmp_path, capsys):
    data = tmp_path / "c"
    DistributedCluster(data, port=0, say=lambda _: None).close()  # makes the layout
    for n in (1, 3):
        (data / "etcd" / f"member-{n}").mkdir(parents=True)
    assert main(["up", "--distributed", "--data-dir", str(data), "--port", "0"]) == 1
    assert "the data of etcd member(s) [2]" in capsys.readouterr().err


def test_event_ttl_reads_go_durations_and_refuses_the_rest(capsys):
    assert [event_ttl(t) for t in ("1h0m0s", "90m", "30", "0", "1.5s")] == [3600, 5400, 30, 0, 1]
    for bad in ("soon", "-5s"):
        with pytest.raises(SystemExit):
            main(["up", "--event-ttl", bad])
        assert "--event-ttl" in capsys.readouterr().err


def test_the_apiserver_refuses_a_bad_advertise_address_or_admission_plugin(capsys):
    common = ["apiserver", "--listen", "127.0.0.1:1", "--etcd-servers", "1=127.0.0.1:2"]
    for flag, bad in (("--advertise-address", "0.0.0.0"), ("--advertise-address", "host"),
                      ("--disable-admission-plugins", "ServiceAccount,Nope")):  # fmt: skip
        with pytest.raises(SystemExit):
            main([*common, flag, bad])
        assert flag in capsys.readouterr().err


def test_the_advertised_address_is_the_bound_one_unless_told():
    assert advertise_address("127.0.0.5", "https://127.0.0.5:6444") == "127.0.0.5:6444"
    assert advertise_address("0.0.0.0", "https://127.0.0.1:6443") == "127.0.0.1:6443"
    assert advertise_address("localhost", "https://localhost:6443") == "127.0.0.1:6443"
    assert advertise_address("0.0.0.0", "https://127.0.0.1:6443", "10.0.0.2") == "10.0.0.2:6443"
