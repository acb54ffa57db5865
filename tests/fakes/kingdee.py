"""A stand-in for Kingdee 金蝶云星空's WebAPI, checking requests against the documented fields
and answering in the documented shapes (see :mod:`connectors.erp.kingdee` for the sources).

- ``AuthService.ValidateUser`` checks acctID, username, password and lcid, answers
  ``LoginResultType`` (1 or 0) and ``Message``, and sets the ``kdservice-sessionid`` cookie;
  other calls without a live session answer ``MsgCode`` 1 (session lost).
- ``Save`` / ``BatchSave`` check ``formid`` GL_VOUCHER and each voucher model: account book,
  date, voucher group, entries with a known account, one of FDEBIT / FCREDIT non-zero, the
  auxiliary dimensions an account requires (expense accounts a department FFLEX5, the payable
  an employee FFLEX7), debits equal to credits, and a unique business key. They answer
  ``Result.ResponseStatus`` with ``IsSuccess``, ``Errors`` (FieldName, Message, DIndex) and
  ``SuccessEntitys`` (Id, Number, DIndex): per item, the good ones saved.
- ``ExecuteBillQuery`` answers rows (lists of the FieldKeys' values) for a FilterString of the
  form ``<key> in ('a','b')``.

``lose_next_answers`` saves but answers HTTP 502 (the answer lost on the way): a retry must
find the vouchers, not save them twice. ``expire_session()`` forgets the session.
"""

from __future__ import annotations

import datetime
import re
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import ThreadingHTTPServer
from typing import Any

from tests.fakes.json_server import Answer, serve

ACCOUNT_BOOKS = {"001"}
VOUCHER_GROUPS = {"PRE001": "记"}
# account -> the auxiliary dimension (核算维度) it requires, or None
ACCOUNTS = {"5.2.2": "FDETAILID__FFLEX5", "5.1.3": "FDETAILID__FFLEX5",
            "6602.01": "FDETAILID__FFLEX5", "2221.01.01": None,
            "2241": "FDETAILID__FFLEX7"}  # fmt: skip
KEY = "F_ERPB_ExternalRef"
STUB = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."


@dataclass
class Kingdee:
    acct_id: str = "62f0a1b2c3d4e5"
    user: str = "erpbridge"
    password: str = "Kd-2026!"
    vouchers: dict[str, dict[str, Any]] = field(default_factory=dict)  # business key -> voucher
    calls: list[str] = field(default_factory=list)
    lose_next_answers: int = 0
    sessions: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        server, url = serve(self.handle)
        return server, f"{url}/k3cloud/"

    def expire_session(self) -> None:
        with self.lock:
            self.sessions.clear()

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if method == "GET":
            return 200, {"status": "up"}, {}
        service = path.removeprefix(STUB)
        with self.lock:
            self.calls.append(service.split(".")[1] if "." in service else service)
        if service == "AuthService.ValidateUser.common.kdsvc":
            return self._login(body)
        cookie = headers.get("Cookie", "")
        if not any(f"kdservice-sessionid={s}" in cookie for s in self.sessions):
            return 200, _result(False, [{"FieldName": None, "Message": "会话信息已丢失，请重新登录",
                                        "DIndex": 0}], msg_code=1), {}  # fmt: skip
        if service == "DynamicFormService.ExecuteBillQuery.common.kdsvc":
            return 200, self._query(body), {}
        if service in ("DynamicFormService.Save.common.kdsvc",
                       "DynamicFormService.BatchSave.common.kdsvc"):  # fmt: skip
            answer = self._save(body, batch="BatchSave" in service)
            with self.lock:
                if self.lose_next_answers:
                    self.lose_next_answers -= 1
                    return 502, {"error": "bad gateway (the answer was lost)"}, {}
            return 200, answer, {}
        return 404, {"error": f"no service {service}"}, {}

    def _login(self, body: Any) -> Answer:
        expected = {"acctID": self.acct_id, "username": self.user, "password": self.password}
        if not isinstance(body, dict) or any(body.get(k) != v for k, v in expected.items()) or (
                body.get("lcid") not in (2052, 1033, 3076)):  # fmt: skip
            return 200, {"LoginResultType": 0, "Message": "用户名或密码错误"}, {}
        session = uuid.uuid4().hex
        with self.lock:
            self.sessions.add(session)
        return (
            200,
            {"LoginResultType": 1, "Message": None},
            {"Set-Cookie": f"kdservice-sessionid={session}; Path=/"},
        )

    def _query(self, body: Any) -> Any:
        data = (body or {}).get("data") or {}
        keys = [k.strip() for k in str(data.get("FieldKeys", "")).split(",")]
        match = re.fullmatch(rf"{KEY} in \((.*)\)", str(data.get("FilterString", "")))
        if data.get("FormId") != "GL_VOUCHER" or match is None or not keys:
            return [[_result(False, [{"FieldName": "FilterString", "DIndex": 0,
                                      "Message": "不支持的查询"}])]]  # fmt: skip
        wanted = [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", match.group(1))]
        with self.lock:
            found = [self.vouchers[w] for w in wanted if w in self.vouchers]
        return [[voucher.get(key) for key in keys] for voucher in found]

    def _save(self, body: Any, batch: bool) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("formid") != "GL_VOUCHER":
            return _result(False, [{"FieldName": "formid", "Message": "表单不存在", "DIndex": 0}])
        data = body.get("data") or {}
        models = data.get("Model")
        if batch and not isinstance(models, list) or not batch and not isinstance(models, dict):
            return _result(False, [{"FieldName": "Model", "DIndex": 0,
                                    "Message": "Model 格式错误"}])  # fmt: skip
        errors, saved = [], []
        for index, model in enumerate(models if batch else [models]):
            problems = _check(model)
            with self.lock:
                if not problems and model[KEY] in self.vouchers:
                    problems = [(KEY, f"违反字段唯一性要求：编码唯一。[{model[KEY]}]已存在")]
                if problems:
                    errors += [{"FieldName": f, "Message": m, "DIndex": index} for f, m in problems]
                    continue
                number = f"记-{len(self.vouchers) + 1:04d}"
                voucher = {"FVOUCHERID": 100_000 + len(self.vouchers) + 1,
                           "FVOUCHERGROUPNO": number, "FDate": model["FDate"],
                           "audited": bool(data.get("IsAutoSubmitAndAudit")),
                           KEY: model[KEY], "model": model}  # fmt: skip
                self.vouchers[model[KEY]] = voucher
            saved.append({"Id": voucher["FVOUCHERID"], "Number": number, "DIndex": index})
        return _result(not errors, errors, saved)


def _result(ok: bool, errors: list[dict[str, Any]], saved: list[dict[str, Any]] | None = None,
            msg_code: int = 0) -> dict[str, Any]:  # fmt: skip
    saved = saved or []
    return {"Result": {"ResponseStatus": {"ErrorCode": 0 if ok else 500, "IsSuccess": ok,
                                          "Errors": errors, "SuccessEntitys": saved,
                                          "SuccessMessages": [], "MsgCode": msg_code},
                       "Id": saved[0]["Id"] if len(saved) == 1 else 0,
                       "Number": saved[0]["Number"] if len(saved) == 1 else "",
                       "NeedReturnData": []}}  # fmt: skip


def _check(model: Any) -> list[tuple[str, str]]:
    """What Kingdee would refuse in one voucher model, as (FieldName, Message)."""
    if not isinstance(model, dict):
        return [("Model", "Model 格式错误")]
    problems = []
    if (model.get("FAccountBookID") or {}).get("FNumber") not in ACCOUNT_BOOKS:
        problems.append(("FAccountBookID", "账簿不存在"))
    try:
        datetime.date.fromisoformat(str(model.get("FDate")))
    except ValueError:
        problems.append(("FDate", "日期格式错误"))
    if (model.get("FVOUCHERGROUPID") or {}).get("FNumber") not in VOUCHER_GROUPS:
        problems.append(("FVOUCHERGROUPID", "凭证字不存在"))
    if not model.get(KEY):
        problems.append((KEY, "业务键不能为空"))
    entries = model.get("FEntity")
    if not isinstance(entries, list) or not entries:
        return [*problems, ("FEntity", "分录不能为空")]
    debit = credit = Decimal(0)
    for n, entry in enumerate(entries, 1):
        account = (entry.get("FACCOUNTID") or {}).get("FNumber")
        if account not in ACCOUNTS:
            problems.append(("FACCOUNTID", f"第{n}行分录：科目[{account}]不存在"))
            continue
        try:
            d, c = Decimal(str(entry.get("FDEBIT", 0))), Decimal(str(entry.get("FCREDIT", 0)))
        except InvalidOperation:
            problems.append(("FDEBIT", f"第{n}行分录：金额格式错误"))
            continue
        if (d == 0) == (c == 0):
            problems.append(("FDEBIT", f"第{n}行分录：借方金额和贷方金额必须且只能录入一个"))
        if not entry.get("FEXPLANATION"):
            problems.append(("FEXPLANATION", f"第{n}行分录：摘要不能为空"))
        dimension = ACCOUNTS[account]
        if dimension and not ((entry.get("FDetailID") or {}).get(dimension) or {}).get("FNumber"):
            problems.append(("FDetailID", f"第{n}行分录：科目[{account}]的核算维度必录"))
        debit, credit = debit + d, credit + c
    if debit != credit:
        problems.append(("FEntity", f"借贷不平衡：借方 {debit}，贷方 {credit}"))
    return problems
