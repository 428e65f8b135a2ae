module github.com/scriptrun/scriptrun/test/cluster/tools/pause

go 1.24
