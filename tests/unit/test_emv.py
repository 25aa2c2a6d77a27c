"""EMVCo MPM codec (R-CODE-2): the SPEC's Hong Kong FPS vector, the refusals, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom import emv
from strongroom.cli import app
from strongroom.emv.names import fps_account, is_dynamic

FPS_VECTOR = (
    "00020101021226330012hk.com.hkicl0313+852-6789123452040000530334454031005802HK"
    "5914company_1_data6002HK62170513INV/TEST/00016304A154"
)
runner = CliRunner()


def test_crc_check_value() -> None:
    assert emv.crc16(b"123456789") == 0x29B1


def test_fps_vector_decodes_to_its_fields() -> None:
    payload = emv.decode(FPS_VECTOR)
    assert payload.crc == "A154"
    assert [field.id for field in payload.fields] == [
        "00", "01", "26", "52", "53", "54", "58", "59", "60", "62",
    ]  # fmt: skip
    assert payload.value("00") == "01"
    assert is_dynamic(payload)
    account = payload.get("26")
    assert account is not None and account.fields == (
        emv.Field("00", "hk.com.hkicl"),
        emv.Field("03", "+852-67891234"),
    )
    assert payload.value("52") == "0000"
    assert payload.value("53") == "344"
    assert payload.value("54") == "100"
    assert payload.value("58") == "HK"
    assert payload.value("59") == "company_1_data"
    assert payload.value("60") == "HK"
    additional = payload.get("62")
    assert additional is not None and additional.get("05") == emv.Field("05", "INV/TEST/0001")
    fps = fps_account(payload)
    assert fps is not None and fps.mobile == "+852-67891234" and fps.fps_id is None


def test_fps_vector_re_encodes_identically() -> None:
    assert emv.encode(emv.decode(FPS_VECTOR).fields) == FPS_VECTOR


def test_json_document_round_trips() -> None:
    document = emv.payload_to_json(emv.decode(FPS_VECTOR))
    assert document["fields"][2]["name"] == "merchant_account_information"
    assert emv.encode(emv.fields_from_json(json.loads(json.dumps(document)))) == FPS_VECTOR


def test_unknown_ids_are_kept_raw() -> None:
    fields = [
        emv.Field("00", "01"),
        emv.Field("01", "11"),
        emv.Field("27", fields=(emv.Field("00", "com.example.scheme"), emv.Field("77", "x"))),
        emv.Field("65", "reserved-for-future-use"),
        emv.Field("31", "not TLV at all"),  # a template id whose value is not TLV: kept as text
        emv.Field("58", "HK"),
    ]
    payload = emv.encode(fields)
    decoded = emv.decode(payload)
    assert decoded.fields == tuple(fields)
    assert emv.encode(decoded.fields) == payload


def with_crc(body: str) -> str:
    body += "6304"
    return body + f"{emv.crc16(body.encode()):04X}"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (FPS_VECTOR[:-1] + "5", "emv_crc_mismatch"),
        (FPS_VECTOR.replace("company_1_data", "company_2_data"), "emv_crc_mismatch"),
        (FPS_VECTOR[:-8], "emv_crc_missing"),
        (FPS_VECTOR[:45], "emv_length_overrun"),
        (FPS_VECTOR[:50], "emv_truncated"),
        ("0002010", "emv_truncated"),
        ("000201010212" + "59", "emv_truncated"),
        ("0002010102125930short" + "6304ABCD", "emv_length_overrun"),
        ("0002010102125900X5abcde6304ABCD", "emv_id_invalid"),
        ("0002010102125 05abcde6304ABCD", "emv_id_invalid"),
        ("0002010102125905abcde59X5abcde6304ABCD", "emv_length_invalid"),
        ("00020101021259A5abcde6304ABCD", "emv_length_invalid"),
        ("000201AB0212", "emv_id_invalid"),
        ("", "emv_truncated"),
        (with_crc("000202"), "emv_format_invalid"),
        (with_crc("010212000201"), "emv_format_invalid"),
        ("00020163040000" + with_crc(""), "emv_crc_misplaced"),
    ],
)
def test_malformed_payloads_are_refused_clearly(payload: str, code: str) -> None:
    with pytest.raises(emv.EmvError) as refused:
        emv.decode(payload)
    assert refused.value.code == code
    assert refused.value.status == 422
    assert refused.value.message


def test_encode_refuses_what_is_no_payload() -> None:
    with pytest.raises(emv.EmvError, match="payload format indicator"):
        emv.encode([emv.Field("01", "11")])
    with pytest.raises(emv.EmvError) as too_long:
        emv.encode([emv.Field("00", "01"), emv.Field("59", "x" * 100)])
    assert too_long.value.code == "emv_length_invalid"
    with pytest.raises(emv.EmvError) as not_template:
        emv.encode([emv.Field("00", "01"), emv.Field("59", fields=(emv.Field("00", "x"),))])
    assert not_template.value.code == "emv_field_invalid"


def test_cli_decode_prints_fields_as_json() -> None:
    result = runner.invoke(app, ["emv", "decode", FPS_VECTOR])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["crc"] == "A154"
    assert document["fields"][9] == {
        "id": "62",
        "name": "additional_data",
        "fields": [{"id": "05", "name": "reference_label", "value": "INV/TEST/0001"}],
    }


@pytest.mark.parametrize("payload", [FPS_VECTOR[:-1] + "5", FPS_VECTOR[:60]])
def test_cli_decode_exits_1_on_a_bad_payload(payload: str) -> None:
    result = runner.invoke(app, ["emv", "decode", payload])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "strongroom emv decode: emv_" in result.stderr


def test_cli_encode_writes_the_payload_with_its_crc(tmp_path: Path) -> None:
    document = emv.payload_to_json(emv.decode(FPS_VECTOR))
    document["crc"] = "0000"  # ignored: encode computes it
    file = tmp_path / "fps.json"
    file.write_text(json.dumps(document), encoding="utf-8")
    result = runner.invoke(app, ["emv", "encode", str(file)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == FPS_VECTOR


def test_cli_encode_exits_1_on_bad_fields(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"fields": [{"id": "59", "value": "x"}]}), encoding="utf-8")
    result = runner.invoke(app, ["emv", "encode", str(file)])
    assert result.exit_code == 1
    assert "emv_format_invalid" in result.stderr
    file.write_text("{not json", encoding="utf-8")
    assert runner.invoke(app, ["emv", "encode", str(file)]).exit_code == 1


def test_the_fps_vector_reads_as_a_dynamic_hkd_code() -> None:
    from strongroom.emv import mpm

    code = mpm.read(emv.decode(FPS_VECTOR))
    assert code.dynamic and code.amount == "100" and code.currency == "344"
    assert (code.country, code.name, code.city) == ("HK", "company_1_data", "HK")
    assert code.reference == "INV/TEST/0001" and code.mcc == "0000"
    assert [account.id for account in code.accounts] == ["26"]


def test_build_makes_the_fps_vector_and_static_codes() -> None:
    from strongroom.emv import mpm

    built = mpm.build(
        account_identifier="hk.com.hkicl",
        account_fields=(emv.Field("03", "+852-67891234"),),
        mcc="0000",
        currency="344",
        country="HK",
        name="company_1_data",
        city="HK",
        amount="100",
        reference="INV/TEST/0001",
    )
    assert built == FPS_VECTOR
    static = mpm.read(
        emv.decode(
            mpm.build(
                account_identifier="com.example.wallet",
                mcc="5411",
                currency="344",
                country="HK",
                name="Corner Shop",
                city="Hong Kong",
            )
        )
    )
    assert not static.dynamic and static.amount is None and static.reference is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": "x" * 26}, "emv_name_invalid"),
        ({"city": "x" * 16}, "emv_name_invalid"),
        ({"currency": "HKD"}, "emv_currency_invalid"),
        ({"mcc": "54"}, "emv_mcc_invalid"),
        ({"country": "hk"}, "emv_country_invalid"),
        ({"amount": "1,00"}, "emv_amount_invalid"),
        ({"amount": "01.5"}, "emv_amount_invalid"),
        ({"amount": "1" * 14}, "emv_amount_invalid"),
        ({"account_template_id": "52"}, "emv_field_invalid"),
    ],
)
def test_build_refuses_what_the_fields_cannot_hold(change: dict[str, str], code: str) -> None:
    from strongroom.emv import mpm

    values = {
        "account_identifier": "com.example.wallet",
        "mcc": "5411",
        "currency": "344",
        "country": "HK",
        "name": "Corner Shop",
        "city": "Hong Kong",
        **change,
    }
    with pytest.raises(emv.EmvError) as refused:
        mpm.build(**values)
    assert refused.value.code == code
