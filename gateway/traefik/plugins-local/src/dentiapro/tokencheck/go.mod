module dentiapro/tokencheck

go 1.22
