"""Field types shared by the pydantic boundaries (configs and requests)."""

from typing import Annotated

from pydantic import Field

Seed = Annotated[int, Field(ge=0, lt=2**32, description="Random seed: numpy and torch generators take 0 .. 2**32 - 1.")]
"""A seed every generator of the run accepts (numpy refuses negatives, torch and numpy refuse >= 2**64)."""
