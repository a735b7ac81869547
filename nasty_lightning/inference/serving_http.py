"""What ``nasty-train serve`` checks in its HTTP process, before a request reaches LitServe.

- The request: FastAPI validates it with ``TagRequest``, so a bad request gets 422 with the reason (one line,
  ``validation_error``) and never reaches the model worker, where it would join a batch of others.
- The connection: ``_compat.uvicorn.timed_headers`` closes one that does not send its request's headers in time.
"""

import time
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, PrivateAttr, RootModel, ValidationError, model_validator

from nasty_lightning.data.encoding import not_unicode

MAX_SENTENCES = 256  # per request: a larger list gets 422
MAX_WORDS = 2000  # per sentence, after splitting text


class SentenceIn(BaseModel):
    """One sentence: running ``text`` (split into words as ``Tagger.tag`` splits it) or pre-split ``words``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    words: list[str] | None = None

    @model_validator(mode="after")
    def _one_sentence(self) -> "SentenceIn":
        from nasty_lightning.formats.texts import split_words

        if (self.text is None) == (self.words is None):
            raise ValueError("give either 'text' or 'words'")
        if self.words is not None and any(not w or len(w.split()) != 1 or w != w.strip() for w in self.words):
            raise ValueError("every word must be a non-empty string without spaces")
        for where, value in [("text", self.text)] if self.words is None else enumerate(self.words):
            problem = not_unicode(value)
            if problem:  # the tokenizer would fail on it, in the worker
                raise ValueError(f"{where if where == 'text' else f'word {where + 1}'}: {problem}")
        n = len(self.words if self.words is not None else split_words(self.text))
        if n == 0:
            raise ValueError("the sentence has no word")
        if n > MAX_WORDS:
            raise ValueError(f"the sentence has {n} words, more than {MAX_WORDS}")
        return self


class TagRequest(RootModel[Any]):
    """A sentence (``SentenceIn``), or a list of 1 to ``MAX_SENTENCES`` of them. Validated here, in one step,
    so a bad request gets one message (a union type would report every way it failed to match). ``arrived``:
    when it was validated (``time.monotonic``, one clock for every process on Linux), for its deadline."""

    _arrived: float = PrivateAttr(default_factory=time.monotonic)

    @model_validator(mode="after")
    def _sentences(self) -> "TagRequest":
        if isinstance(self.root, bytes):  # FastAPI's reading of a body sent without a JSON content type
            raise ValueError("send the body as JSON, with the header Content-Type: application/json")
        many = isinstance(self.root, list)
        if many and not 0 < len(self.root) <= MAX_SENTENCES:
            raise ValueError(f"give from 1 to {MAX_SENTENCES} sentences, not {len(self.root)}")
        items = self.root if many else [self.root]
        sentences = []
        for n, item in enumerate(items):
            where = f"sentence {n + 1}: " if many else ""
            if not isinstance(item, dict):
                raise ValueError(f"{where}expected an object with 'text' or 'words', got {type(item).__name__}")
            try:
                sentences.append(SentenceIn.model_validate(item))
            except ValidationError as err:
                first = err.errors()[0]
                field = ".".join(str(x) for x in first["loc"])
                raise ValueError(
                    f"{where}{field + ': ' if field else ''}{first['msg'].removeprefix('Value error, ')}"
                ) from None
        self.root = sentences if many else sentences[0]
        return self

    @property
    def arrived(self) -> float:
        return self._arrived

    def __repr__(self) -> str:
        """Short, without the text: LitServe formats every request into a debug message, logged or not."""
        return f"TagRequest({len(self.root) if isinstance(self.root, list) else 1} sentences)"

    __str__ = __repr__


async def validation_error(request: Any, err: RequestValidationError) -> JSONResponse:
    """One line for a bad request: the reason, without echoing its body back."""
    first = err.errors()[0] if err.errors() else {"msg": "invalid request"}
    message = "the body is not valid JSON" if first.get("type") == "json_invalid" else first["msg"]
    return JSONResponse(status_code=422, content={"detail": message.removeprefix("Value error, ")})
