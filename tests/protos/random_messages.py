"""A hypothesis strategy for a random protobuf message of any class: any of its fields set,
each to a value drawn from a table of scalar strategies by field type (``scalars``), nested
messages to ``depth``. Shared by the converters' property tests and the command fuzz."""

from __future__ import annotations

from google.protobuf import message_factory
from hypothesis import strategies as st


def message_class(fd):
    """The generated class of message field ``fd``."""
    return message_factory.GetMessageClass(fd.message_type)


@st.composite
def random_messages(draw, cls, scalars: dict, depth: int = 3):
    """A message of ``cls`` with any fields set to values of ``scalars[field type]``."""
    msg = cls()
    for fd in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        field = getattr(msg, fd.name)
        if fd.message_type is not None:
            if depth == 0:
                continue
            values = draw(st.lists(random_messages(message_class(fd), scalars, depth - 1),
                                   min_size=1, max_size=3 if fd.is_repeated else 1))
            if fd.is_repeated:
                field.extend(values)
            else:
                field.CopyFrom(values[0])
        elif fd.is_repeated:
            field.extend(draw(st.lists(scalars[fd.type], max_size=3)))
        else:
            setattr(msg, fd.name, draw(scalars[fd.type]))
    return msg
