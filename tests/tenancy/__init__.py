"""The tenancy rules seen through the API: no tenant reads or writes another's data."""
